package proto

// MaxTagLength is the longest tag name the distribution spec allows.
const MaxTagLength = 128

// ValidTag reports whether s is a well-formed tag name under the distribution spec's grammar
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. Everything that names or deletes a tag agrees on it through
// this one function. A tag can never contain ':', so a valid tag is never a digest.
func ValidTag(s string) bool {
	if len(s) == 0 || len(s) > MaxTagLength {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
