package keyspace

import (
	"math"
	"time"
)

// scale reads the keys of one range as numbers, so that planning can measure how densely tags
// lie and interpolate where a given number of them should end. There are three readings:
//
//   - time, when the keys start with a timestamp (at least a date, YYYYMMDD): tags cluster
//     in time, and "2026111023" and "2026111024" are an hour apart and nothing;
//   - decimal, the digits after a prefix read as a decimal fraction: build numbers;
//   - lexical, the bytes after a prefix read as a base-67 fraction over the tag alphabet.
//
// Every reading is monotone (non-decreasing) in byte order, which is all the callers rely on:
// a key that a scale produces is only used after checking that it lies where it should. A key
// that does not start with the prefix reads as 0 below it and 1 above it.
type scale struct {
	kind   scaleKind
	prefix string // decimal and lexical: the prefix skipped
}

type scaleKind int

const (
	lexicalScale scaleKind = iota
	decimalScale
	timeScale
)

// digits a decimal or lexical position reads after the prefix: 10^15 and 67^8 are below 2^53,
// so a float64 holds them exactly.
const (
	decimalDigits = 15
	lexDigits     = 8
	lexBase       = float64(len(alphabet) + 2)
)

// roundingSlack absorbs the rounding of a position read back digit by digit: without it, the
// key of "abc"'s position would come out as "abb~".
const roundingSlack = 1e-6

// lexDigit is a byte's digit in a lexical position: 0 is the end of the key, 1 to 65 the tag
// alphabet (a byte outside it reads as the next one inside), 66 any byte above 'z', such as
// '~', which ends the range of every name.
func lexDigit(c byte) int {
	if c > alphabet[len(alphabet)-1] {
		return len(alphabet) + 1
	}
	return digit(c)
}

// commonPrefix returns the length of the longest common prefix of a and b.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// pos returns k's position on the scale.
func (s scale) pos(k string) float64 {
	if s.kind == timeScale {
		return float64(monotoneTime(k).Unix())
	}
	if len(k) < len(s.prefix) || k[:len(s.prefix)] != s.prefix {
		if k < s.prefix {
			return 0
		}
		return 1
	}
	k = k[len(s.prefix):]
	if s.kind == decimalScale { // as an integer of 15 digits, so that rounding cannot reorder
		var n int64
		pad := int64(0)
		for i := range decimalDigits {
			switch {
			case pad == 0 && i < len(k) && isDigit(k[i]):
				n = n*10 + int64(k[i]-'0')
				continue
			case pad == 0 && i < len(k) && k[i] > '9': // above every digit string here: the rest reads as nines
				pad = 9
			case pad == 0:
				pad = -1
			}
			n = n*10 + max(pad, 0)
		}
		return float64(n) / 1e15
	}
	p, unit := 0.0, 1.0
	for i := range min(lexDigits, len(k)) {
		unit /= lexBase
		p += float64(lexDigit(k[i])) * unit
	}
	return p
}

// key returns a key whose position is about p ("" when there is none).
func (s scale) key(p float64) string {
	switch s.kind {
	case timeScale:
		if p < -62135596800 || p > 253402300799 { // outside years 1 to 9999
			return ""
		}
		return time.Unix(int64(math.Ceil(p)), 0).UTC().Format("20060102150405")
	case decimalScale:
		b := []byte(s.prefix)
		for range decimalDigits {
			p *= 10
			d := min(int(p+roundingSlack), 9)
			p = max(p-float64(d), 0)
			b = append(b, byte('0'+d))
		}
		for len(b) > len(s.prefix) && b[len(b)-1] == '0' { // "12" and "1200" read alike; "12" is shorter
			b = b[:len(b)-1]
		}
		return string(b)
	}
	b := []byte(s.prefix)
	for range lexDigits {
		p *= lexBase
		d := min(int(p+roundingSlack), len(alphabet)+1)
		p = max(p-float64(d), 0)
		if d <= 0 {
			break
		}
		if d > len(alphabet) {
			b = append(b, '~')
			continue
		}
		b = append(b, alphabet[d-1])
	}
	return string(b)
}

// datePrefix reports whether k starts with a valid date, YYYYMMDD.
func datePrefix(k string) bool {
	if len(k) < 8 {
		return false
	}
	for i := range 8 {
		if k[i] < '0' || k[i] > '9' {
			return false
		}
	}
	y := atoi(k[0:4])
	m, d := atoi(k[4:6]), atoi(k[6:8])
	return m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, time.Month(m))
}

func atoi(s string) int {
	n := 0
	for i := range len(s) {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func daysIn(y int, m time.Month) int { return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day() }

// monotoneTime reads the leading digits of k (at most 14, YYYYMMDDHHMMSS) as a UTC time such
// that a key sorting after another never reads as an earlier time. Missing digits are read as
// the smallest ('0') or, when k goes on with a byte above '9', the largest ('9') digit; a
// field out of its range is clamped, and every field after it is then read as its own
// minimum or maximum alike. Keys need not be real dates.
func monotoneTime(k string) time.Time {
	var d [14]byte
	n := 0
	for n < len(k) && n < len(d) && k[n] >= '0' && k[n] <= '9' {
		d[n] = k[n]
		n++
	}
	pad := byte('0')
	if n < len(d) && n < len(k) && k[n] > '9' {
		pad = '9'
	}
	for i := n; i < len(d); i++ {
		d[i] = pad
	}
	y := atoi(string(d[0:4]))
	f := [5]int{atoi(string(d[4:6])), atoi(string(d[6:8])), atoi(string(d[8:10])), atoi(string(d[10:12])), atoi(string(d[12:14]))}
	lo := [5]int{1, 1, 0, 0, 0}
	hi := [5]int{12, 31, 23, 59, 59}
	sat := 0 // -1: every later field at its minimum; +1: at its maximum
	for i := range f {
		if i == 1 {
			hi[1] = daysIn(y, time.Month(f[0]))
		}
		switch {
		case sat < 0:
			f[i] = lo[i]
		case sat > 0:
			f[i] = hi[i]
		case f[i] < lo[i]:
			f[i], sat = lo[i], -1
		case f[i] > hi[i]:
			f[i], sat = hi[i], 1
		}
	}
	return time.Date(y, time.Month(f[0]), f[1], f[2], f[3], f[4], 0, time.UTC)
}
