// Package keyspace is the key-range arithmetic behind sharding: how a repository's tag
// namespace is cut into shards sized by the work in them (Plan), and where a running shard is
// cut in two (Split). It is pure: the only outside call is the Page function a caller passes
// to Plan.
//
// Keys are compared in byte order, like Go strings and like registries list tags. A range is a
// proto.Range: it holds the tags t with After < t <= Through. Boundaries are keys, not dates:
// any key can end a shard, a timestamp to the second or a byte string between two names.
// Where keys start with a timestamp, planning and splitting interpolate in time (tags cluster
// in time, not in digits: "20261110" and "20261111" are a day apart, "2026111023" and
// "2026111024" are an hour and nothing), otherwise byte-wise over the tag alphabet.
package keyspace

import (
	"math/big"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

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

// End sorts after every tag a registry can hold (a tag is [A-Za-z0-9_][A-Za-z0-9._-]*, and
// '~' sorts after all of those bytes): ("", End] is a repository's whole tag namespace.
const End = "~"
