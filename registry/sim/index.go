package sim

import (
	"slices"
	"sort"
	"strings"
)

// The tag index is a two-level sorted structure: an ordered list of chunks, each a sorted
// slice of at most chunkMax entries, every chunk's keys below the next chunk's. It is a B+
// tree cut down to one inner level.
//
// Why this and not a sorted slice with tombstones, a skip list or a full B-tree:
//   - A sorted slice with tombstones makes a list after a large deleted run (a whole pruned
//     shard: hundreds of thousands of tombstones in a row) walk every tombstone until the next
//     compaction, i.e. O(total tags) per request, exactly what the sim must not do; and an
//     insert moves the whole tail.
//   - Here a lookup is two binary searches, an insert or delete moves at most chunkMax entries,
//     and a page walks only live entries. Splitting or dropping a chunk moves the chunk list
//     (a few thousand slice headers at 1M tags), once per chunkMax/2 changes at most.
//   - Entries are contiguous (cache friendly, 24 bytes each plus the name), bulk load is a sort
//     and a slice-up, and the whole thing is a page of code that is easy to test, which a
//     rebalancing B-tree or a skip list (one allocation per tag) is not.
//
// The index is not safe for concurrent use; the repository's lock guards it.

// chunkMax is the largest chunk; a chunk that grows beyond it is split in two.
const chunkMax = 512

// chunkFill is how full bulk-built chunks are, leaving room for inserts.
const chunkFill = chunkMax * 3 / 4

// entry is one tag: its name, the index of its manifest digest in the repository's digest
// table (tags share digests, so the digest string is stored once), and when it was pushed
// or last moved (unix ms; Quay's lifetime_start, for API v1 ordering).
type entry struct {
	name  string
	man   int32
	start int64
}

type index struct {
	chunks [][]entry // non-empty, sorted, chunks[i] all below chunks[i+1]
	n      int
}

// buildIndex makes an index from entries sorted by name with no duplicates.
func buildIndex(sorted []entry) index {
	var x index
	x.n = len(sorted)
	for i := 0; i < len(sorted); i += chunkFill {
		j := min(i+chunkFill, len(sorted))
		// Three-index slice: an insert into a full chunk reallocates instead of
		// overwriting the next chunk's entries in the shared backing array.
		x.chunks = append(x.chunks, sorted[i:j:j])
	}
	return x
}

// Len is the number of tags.
func (x *index) Len() int { return x.n }

// seek returns the chunk and the position in it of the first entry with name >= key
// (strict false) or > key (strict true). ci == len(x.chunks) means past the end.
func (x *index) seek(key string, strict bool) (ci, i int) {
	ci = sort.Search(len(x.chunks), func(c int) bool {
		last := x.chunks[c][len(x.chunks[c])-1].name
		if strict {
			return last > key
		}
		return last >= key
	})
	if ci == len(x.chunks) {
		return ci, 0
	}
	ch := x.chunks[ci]
	i = sort.Search(len(ch), func(k int) bool {
		if strict {
			return ch[k].name > key
		}
		return ch[k].name >= key
	})
	return ci, i
}

// get returns the entry named name.
func (x *index) get(name string) (entry, bool) {
	ci, i := x.seek(name, false)
	if ci == len(x.chunks) || x.chunks[ci][i].name != name {
		return entry{}, false
	}
	return x.chunks[ci][i], true
}

// after appends to dst up to n entries with name > last, in order, and reports whether more
// entries follow them.
func (x *index) after(dst []entry, last string, n int) ([]entry, bool) {
	ci, i := x.seek(last, true)
	for ; ci < len(x.chunks); ci, i = ci+1, 0 {
		ch := x.chunks[ci][i:]
		if len(ch) > n {
			return append(dst, ch[:n]...), true
		}
		dst = append(dst, ch...)
		n -= len(ch)
		if n == 0 {
			return dst, ci+1 < len(x.chunks)
		}
	}
	return dst, false
}

// put inserts e, or replaces the entry with its name. It reports whether the name was new.
func (x *index) put(e entry) bool {
	name := e.name
	ci, i := x.seek(name, false)
	if ci == len(x.chunks) {
		if ci == 0 {
			x.chunks = append(x.chunks, make([]entry, 0, chunkMax))
		} else {
			ci--
		}
		i = len(x.chunks[ci])
	} else if x.chunks[ci][i].name == name {
		x.chunks[ci][i] = e
		return false
	}
	x.chunks[ci] = slices.Insert(x.chunks[ci], i, e)
	x.n++
	if ch := x.chunks[ci]; len(ch) > chunkMax {
		half := len(ch) / 2
		right := make([]entry, len(ch)-half, chunkMax)
		copy(right, ch[half:])
		clear(ch[half:]) // drop references to the moved names
		x.chunks[ci] = ch[:half]
		x.chunks = slices.Insert(x.chunks, ci+1, right)
	}
	return true
}

// remove deletes name and returns its entry.
func (x *index) remove(name string) (entry, bool) {
	ci, i := x.seek(name, false)
	if ci == len(x.chunks) || x.chunks[ci][i].name != name {
		return entry{}, false
	}
	e := x.chunks[ci][i]
	x.chunks[ci] = slices.Delete(x.chunks[ci], i, i+1)
	x.n--
	switch ch := x.chunks[ci]; {
	case len(ch) == 0:
		x.chunks = slices.Delete(x.chunks, ci, ci+1)
	case len(ch) < chunkMax/4:
		// Merge a sparse chunk into a neighbour that has room, so that heavy pruning does
		// not leave a long list of near-empty chunks behind.
		if ci > 0 && len(x.chunks[ci-1])+len(ch) <= chunkMax/2 {
			x.chunks[ci-1] = append(x.chunks[ci-1], ch...)
			x.chunks = slices.Delete(x.chunks, ci, ci+1)
		} else if ci+1 < len(x.chunks) && len(ch)+len(x.chunks[ci+1]) <= chunkMax/2 {
			x.chunks[ci] = append(ch, x.chunks[ci+1]...)
			x.chunks = slices.Delete(x.chunks, ci+1, ci+2)
		}
	}
	return e, true
}

// removeIf deletes every entry for which drop is true, calling it in order, and returns the
// removed entries in order. It costs O(total tags): only deletes by digest use it.
func (x *index) removeIf(drop func(entry) bool) []entry {
	var removed []entry
	kept := make([]entry, 0, x.n)
	for _, ch := range x.chunks {
		for _, e := range ch {
			if drop(e) {
				removed = append(removed, e)
			} else {
				kept = append(kept, e)
			}
		}
	}
	if len(removed) > 0 {
		*x = buildIndex(kept)
	}
	return removed
}

// each calls f for every entry in order.
func (x *index) each(f func(entry)) {
	for _, ch := range x.chunks {
		for _, e := range ch {
			f(e)
		}
	}
}

// names returns every name in order.
func (x *index) names() []string {
	out := make([]string, 0, x.n)
	for _, ch := range x.chunks {
		for _, e := range ch {
			out = append(out, e.name)
		}
	}
	return out
}

// mergeSorted merges sorted, duplicate-free entries into the index. A name present in both
// takes the new entry. It rebuilds the index: O(existing + new), meant for bulk loads.
func (x *index) mergeSorted(add []entry) {
	if x.n == 0 {
		*x = buildIndex(add)
		return
	}
	out := make([]entry, 0, x.n+len(add))
	j := 0
	for _, ch := range x.chunks {
		for _, e := range ch {
			for j < len(add) && add[j].name < e.name {
				out = append(out, add[j])
				j++
			}
			if j < len(add) && add[j].name == e.name {
				out = append(out, add[j])
				j++
				continue
			}
			out = append(out, e)
		}
	}
	out = append(out, add[j:]...)
	*x = buildIndex(out)
}

// check verifies the index invariants; tests use it.
func (x *index) check() string {
	n := 0
	prev := ""
	for ci, ch := range x.chunks {
		if len(ch) == 0 {
			return "empty chunk"
		}
		if len(ch) > chunkMax {
			return "oversized chunk"
		}
		for i, e := range ch {
			if (ci > 0 || i > 0) && strings.Compare(e.name, prev) <= 0 {
				return "out of order at " + e.name
			}
			prev = e.name
		}
		n += len(ch)
	}
	if n != x.n {
		return "count mismatch"
	}
	return ""
}
