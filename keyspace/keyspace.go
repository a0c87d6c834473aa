// Package keyspace is the key-range arithmetic behind sharding: where shard boundaries go
// (Boundary), how a repository's tag namespace is cut into shards without paying for empty
// stretches (Plan), and where a running shard is cut in two (Split). It is pure: the only
// outside call is the First function a caller passes to Plan.
//
// Keys are compared in byte order, like Go strings and like registries list tags. A range is a
// proto.Range: it holds the tags t with After < t <= Through. Boundaries are keys, not dates:
// "20261132" is a fine day boundary (it sorts between the 31st and the next month), so nothing
// here needs a calendar except Split's interpolation, which only chooses where to cut.
package keyspace

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Width is the number of digits of the timestamp prefix a shard boundary uses.
type Width int

const (
	Day  Width = 8  // YYYYMMDD
	Hour Width = 10 // YYYYMMDDHH
)

// ParseWidth parses "day" or "hour".
func ParseWidth(s string) (Width, error) {
	switch s {
	case "day":
		return Day, nil
	case "hour":
		return Hour, nil
	}
	return 0, fmt.Errorf("shard width %q: want day or hour", s)
}

func (w Width) String() string {
	switch w {
	case Day:
		return "day"
	case Hour:
		return "hour"
	}
	return fmt.Sprintf("width(%d)", int(w))
}

// Boundary returns the smallest string of exactly w ASCII digits that is >= k in byte order,
// and false if there is none (k sorts after w nines). Examples with Day:
// "20261101123000_prune_x" -> "20261102"; "20261101" -> "20261101"; "1.0" -> "10000000";
// "" -> "00000000"; "20261131x" -> "20261132"; "abc" and "99999999z" -> none.
func Boundary(k string, w Width) (string, bool) {
	if w <= 0 {
		return "", false
	}
	n := int(w)
	b := make([]byte, n)
	for i := range n {
		if i == len(k) { // k is a digit prefix of the answer: pad with zeros
			for j := i; j < n; j++ {
				b[j] = '0'
			}
			return string(b), true
		}
		c := k[i]
		switch {
		case c < '0': // any digit here sorts above k
			for j := i; j < n; j++ {
				b[j] = '0'
			}
			return string(b), true
		case c > '9': // no digit here is >= k: carry into the prefix
			return increment(b[:i], n)
		}
		b[i] = c
	}
	if len(k) == n {
		return string(b), true
	}
	return increment(b, n) // k extends b, so b < k: the next w-digit string is the answer
}

// increment returns the smallest n-digit string greater than every string with prefix p.
func increment(p []byte, n int) (string, bool) {
	b := make([]byte, n)
	copy(b, p)
	for j := len(p) - 1; j >= 0; j-- {
		if b[j] < '9' {
			b[j]++
			for i := j + 1; i < n; i++ {
				b[i] = '0'
			}
			return string(b), true
		}
	}
	return "", false
}

// First returns the first tag strictly after `after`, ok=false when there is none (one n=1
// list call).
type First func(ctx context.Context, after string) (tag string, ok bool, err error)

// Plan cuts ("", through] into ranges that end on w-digit boundaries, jumping over empty
// stretches: from the current start it asks first for the next tag that exists, and ends the
// range at the boundary at or after that tag. A lone tag from 1999 costs one probe and one
// mostly empty range, not 27 years of days.
//
// The ranges are contiguous and do not overlap; the first starts at "" and the last ends at
// through, so every key <= through, including tags created after the probes, lies in exactly one
// of them. When no tag <= through exists, Plan returns no ranges. Plan costs one First call per
// range plus one. A First that does not move forward (a registry that ignores the `last`
// parameter) is an error, never an endless loop.
func Plan(ctx context.Context, first First, through string, w Width) ([]proto.Range, error) {
	if w <= 0 {
		return nil, fmt.Errorf("plan: bad width %d", int(w))
	}
	var out []proto.Range
	cur := ""
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		k, ok, err := first(ctx, cur)
		if err != nil {
			return nil, fmt.Errorf("plan: first tag after %q: %w", cur, err)
		}
		if !ok || k > through {
			break
		}
		if k <= cur {
			return nil, fmt.Errorf("plan: asked for the first tag after %q, got %q: the registry does not "+
				"honour keyset listing", cur, k)
		}
		b, ok := Boundary(k, w)
		if !ok || b > through {
			b = through
		}
		out = append(out, proto.Range{After: cur, Through: b})
		if b == through {
			break
		}
		cur = b
	}
	if len(out) > 0 {
		out[len(out)-1].Through = through
	}
	return out, nil
}

// Split picks a key m with cursor < m < r.Through near the middle of what is left of r, so that
// {r.After, m} and {m, r.Through} partition r and the first half holds everything listed so far.
// cursor is where listing has got to ("" or anything below r.After means r.After).
//
// When both ends start with a timestamp (at least a 4-digit year), m is the midpoint in time,
// cut to the coarsest prefix (year, month, day, hour, minute, second: 4 to 14 digits) that still
// lies strictly inside; otherwise, or when that fails (both ends in the same second), m is a
// byte-wise midpoint over the tag alphabet [-.0-9A-Z_a-z]. ok=false when no key lies strictly
// inside (the range is too narrow to split).
func Split(r proto.Range, cursor string) (m string, ok bool) {
	lo, hi := cursor, r.Through
	if lo < r.After {
		lo = r.After
	}
	if lo >= hi {
		return "", false
	}
	inside := func(m string) bool { return lo < m && m < hi }
	if mid, ok := timeMid(lo, hi); ok {
		for _, n := range []int{4, 6, 8, 10, 12, 14} {
			if inside(mid[:n]) {
				return mid[:n], true
			}
		}
	}
	if m, ok := alphabetMid(lo, hi); ok && inside(m) {
		return m, true
	}
	if m := lo + alphabet[:1]; inside(m) { // the smallest tag-alphabet key above lo
		return m, true
	}
	return "", false
}

// timeMid returns the midpoint in time of two keys that start with a timestamp, as 14 digits.
func timeMid(lo, hi string) (string, bool) {
	a, ok := keyTime(lo)
	if !ok {
		return "", false
	}
	b, ok := keyTime(hi)
	if !ok || !a.Before(b) {
		return "", false
	}
	return a.Add(b.Sub(a) / 2).Format("20060102150405"), true
}

// keyTime reads the leading digits of k (at least 4, at most 14) as a UTC time, filling missing
// fields with their minimum and clamping out-of-range fields (keys need not be real dates).
func keyTime(k string) (time.Time, bool) {
	const floor = "00000101000000"
	n := 0
	for n < len(k) && n < len(floor) && k[n] >= '0' && k[n] <= '9' {
		n++
	}
	if n < 4 {
		return time.Time{}, false
	}
	d := k[:n] + floor[n:]
	f := func(i, lo, hi int) int {
		v := int(d[i]-'0')*10 + int(d[i+1]-'0')
		return min(max(v, lo), hi)
	}
	y := int(d[0]-'0')*1000 + int(d[1]-'0')*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	mo := time.Month(f(4, 1, 12))
	last := time.Date(y, mo+1, 0, 0, 0, 0, 0, time.UTC).Day()
	return time.Date(y, mo, f(6, 1, last), f(8, 0, 23), f(10, 0, 59), f(12, 0, 59), 0, time.UTC), true
}

// alphabet is the tag alphabet in byte order. A byte outside it is read as the next byte inside
// it, so that the reading is monotone in byte order.
const alphabet = "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

// alphabetMid returns a key near the midpoint of lo and hi, read as base-(len(alphabet)+1)
// fractions whose digit 0 is "end of string". It returns the shortest prefix of that midpoint
// that sorts above lo, extended by one digit to stay near the middle.
func alphabetMid(lo, hi string) (string, bool) {
	const base = len(alphabet) + 1
	n := max(len(lo), len(hi)) + 2
	value := func(s string) *big.Int {
		v := new(big.Int)
		B := big.NewInt(int64(base))
		for i := range n {
			v.Mul(v, B)
			if i < len(s) {
				v.Add(v, big.NewInt(int64(digit(s[i]))))
			}
		}
		return v
	}
	sum := new(big.Int).Add(value(lo), value(hi))
	sum.Rsh(sum, 1)
	ds := make([]byte, n)
	B := big.NewInt(int64(base))
	rem := new(big.Int)
	for i := n - 1; i >= 0; i-- {
		sum.DivMod(sum, B, rem)
		ds[i] = byte(rem.Int64())
	}
	// Digit 0 inside the string has no character; read it as the smallest character.
	for len(ds) > 0 && ds[len(ds)-1] == 0 {
		ds = ds[:len(ds)-1]
	}
	m := make([]byte, len(ds))
	for i, d := range ds {
		if d == 0 {
			d = 1
		}
		m[i] = alphabet[d-1]
	}
	for l := 1; l <= len(m); l++ {
		if p := string(m[:l]); p > lo {
			if l < len(m) && string(m[:l+1]) < hi {
				return string(m[:l+1]), true
			}
			return p, p < hi
		}
	}
	return "", false
}

// digit maps a byte to 1..len(alphabet): its position in the alphabet, or the position of the
// next alphabet byte above it (bytes above 'z' map to len(alphabet)).
func digit(c byte) int {
	for i := range len(alphabet) {
		if alphabet[i] >= c {
			return i + 1
		}
	}
	return len(alphabet)
}
