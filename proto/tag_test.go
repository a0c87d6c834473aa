package proto

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidTag(t *testing.T) {
	tests := []struct {
		tag  string
		want bool
	}{
		{"latest", true},
		{"20261101123045_prune_ci_a_latest", true},
		{"_x", true},
		{"A.b-C_9", true},
		{"", false},
		{".hidden", false},
		{"-dash", false},
		{"sha256:abc", false},
		{"a/b", false},
		{"tägs", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		if got := ValidTag(tt.tag); got != tt.want {
			t.Errorf("ValidTag(%q) = %v, want %v", tt.tag, got, tt.want)
		}
	}
}

// FuzzValidTag checks ValidTag against the spec's grammar written as a regular expression.
func FuzzValidTag(f *testing.F) {
	grammar := regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	for _, s := range []string{"", "a", "a:b", ".a", "20261101_prune_x", strings.Repeat("z", 128)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidTag(s), grammar.MatchString(s); got != want {
			t.Fatalf("ValidTag(%q) = %v, grammar says %v", s, got, want)
		}
	})
}

func TestValidRepository(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"openshift/ci", true},
		{"app", true},
		{"a/b/c", true},
		{"team-x/app.v2", true},
		{"a__b", true},
		{"a---b", true},
		{"", false},
		{"Team/app", false},
		{"a/", false},
		{"/a", false},
		{"a//b", false},
		{"a___b", false},
		{"a.-b", false},
		{"-a", false},
		{"a:b", false},
		{"a\nb", false},
	}
	for _, tt := range tests {
		if got := ValidRepository(tt.name); got != tt.want {
			t.Errorf("ValidRepository(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzValidDigest checks ValidDigest against the digest form written as a regular expression.
func FuzzValidDigest(f *testing.F) {
	grammar := regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	for _, s := range []string{"", "sha256:", "sha256:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("A", 64),
		"sha512:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("f", 63), "sha256:" + strings.Repeat("f", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidDigest(s), grammar.MatchString(s); got != want {
			t.Fatalf("ValidDigest(%q) = %v, the grammar says %v", s, got, want)
		}
	})
}
