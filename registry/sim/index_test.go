package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// TestIndexAgainstModel drives the index with random puts, removes and pages and compares
// every answer with a plain sorted slice.
func TestIndexAgainstModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			var x index
			model := map[string]int32{}
			key := func() string { return fmt.Sprintf("k%05d", rng.IntN(4000)) }
			if seed == 3 { // start from a bulk load
				var add []entry
				for i := range 3000 {
					add = append(add, entry{name: fmt.Sprintf("k%05d", i), man: 7})
					model[add[i].name] = 7
				}
				x = buildIndex(add)
			}
			names := sortedKeys(model) // the model's keys, kept sorted
			for op := range 30000 {
				switch k := key(); rng.IntN(10) {
				case 0, 1, 2, 3:
					man := int32(rng.IntN(5))
					_, had := model[k]
					if isNew := x.put(entry{name: k, man: man}); isNew == had {
						t.Fatalf("op %d: put(%s) new = %v, want %v", op, k, isNew, !had)
					}
					model[k] = man
					if !had {
						i, _ := slices.BinarySearch(names, k)
						names = slices.Insert(names, i, k)
					}
				case 4, 5, 6:
					e, ok := x.remove(k)
					man, had := model[k]
					if ok != had || (ok && e.man != man) {
						t.Fatalf("op %d: remove(%s) = %v %v, want %v %v", op, k, e, ok, man, had)
					}
					if had {
						i, _ := slices.BinarySearch(names, k)
						names = slices.Delete(names, i, i+1)
					}
					delete(model, k)
				case 7:
					e, ok := x.get(k)
					man, had := model[k]
					if ok != had || (ok && e.man != man) {
						t.Fatalf("op %d: get(%s) = %v %v, want %v %v", op, k, e, ok, man, had)
					}
				default:
					last := k
					if rng.IntN(3) == 0 {
						last = k[:3] // a bare prefix, not a tag
					}
					n := 1 + rng.IntN(700)
					page, more := x.after(nil, last, n)
					start := sort.SearchStrings(names, last)
					if start < len(names) && names[start] == last {
						start++
					}
					want := names[start:min(start+n, len(names))]
					wantMore := start+n < len(names)
					got := make([]string, len(page))
					for i, e := range page {
						got[i] = e.name
					}
					if !slices.Equal(got, want) || more != wantMore {
						t.Fatalf("op %d: after(%q, %d) = %d tags more=%v, want %d more=%v", op, last, n, len(got), more, len(want), wantMore)
					}
				}
				if op%97 == 0 {
					if msg := x.check(); msg != "" {
						t.Fatalf("op %d: invariant broken: %s", op, msg)
					}
				}
			}
			if got, want := x.names(), sortedKeys(model); !slices.Equal(got, want) {
				t.Fatalf("names() differ from model: %d vs %d", len(got), len(want))
			}
		})
	}
}

func sortedKeys(m map[string]int32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestIndexMergeAndRemoveIf(t *testing.T) {
	var x index
	x.mergeSorted([]entry{{name: "b", man: 1}, {name: "d", man: 1}})
	x.mergeSorted([]entry{{name: "a", man: 2}, {name: "b", man: 2}, {name: "c", man: 2}, {name: "e", man: 2}})
	if got, want := x.names(), []string{"a", "b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Fatalf("names() = %v, want %v", got, want)
	}
	if e, _ := x.get("b"); e.man != 2 {
		t.Errorf("get(b).man = %d, want 2 (merge takes the new entry)", e.man)
	}
	var removed []string
	for _, e := range x.removeIf(func(e entry) bool { return e.man == 2 }) {
		removed = append(removed, e.name)
	}
	if want := []string{"a", "b", "c", "e"}; !slices.Equal(removed, want) {
		t.Errorf("removeIf() = %v, want %v", removed, want)
	}
	if got, want := x.names(), []string{"d"}; !slices.Equal(got, want) {
		t.Errorf("names() after removeIf = %v, want %v", got, want)
	}
	if msg := x.check(); msg != "" {
		t.Error(msg)
	}
}

// TestIndexDrainKeepsChunksFew checks that deleting most tags merges chunks, so pages stay
// cheap after heavy pruning.
func TestIndexDrainKeepsChunksFew(t *testing.T) {
	var add []entry
	for i := range 100000 {
		add = append(add, entry{name: fmt.Sprintf("%08d", i)})
	}
	x := buildIndex(add)
	for i := range 100000 {
		if i%100 != 0 {
			x.remove(fmt.Sprintf("%08d", i))
		}
	}
	if x.Len() != 1000 {
		t.Fatalf("Len() = %d, want 1000", x.Len())
	}
	if msg := x.check(); msg != "" {
		t.Fatal(msg)
	}
	if len(x.chunks) > 100 {
		t.Errorf("%d chunks hold 1000 tags; sparse chunks are not merged", len(x.chunks))
	}
}
