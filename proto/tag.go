package proto

import (
	"regexp"
	"strings"
)

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

// repositoryRE is the distribution spec's repository name grammar: path components of
// lower-case letters and digits, joined by '.', '_', "__" or runs of '-', separated by '/'.
var repositoryRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// ValidRepository reports whether s is a well-formed repository name under the distribution
// spec's grammar. The registry clients and the simulator refuse any other.
func ValidRepository(s string) bool { return repositoryRE.MatchString(s) }

// ValidDigest reports whether s is a canonical sha256 digest, "sha256:" and 64 lower-case
// hex digits: the only digest form tagsweep reads, writes or accepts.
func ValidDigest(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := range len(hex) {
		if c := hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
