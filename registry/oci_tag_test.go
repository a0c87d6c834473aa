package registry

import (
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

// (*OCI).Delete checks tags with proto.ValidTag (no regexp on the hot path) where the other
// clients use tagRE: the two must accept exactly the same tags.
func TestValidTagIsTagRE(t *testing.T) {
	for _, tag := range tagSamples() {
		if got, want := proto.ValidTag(tag), tagRE.MatchString(tag); got != want {
			t.Errorf("proto.ValidTag(%q) = %v, tagRE says %v", tag, got, want)
		}
	}
}

func FuzzValidTagIsTagRE(f *testing.F) {
	for _, tag := range tagSamples() {
		f.Add(tag)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		if got, want := proto.ValidTag(tag), tagRE.MatchString(tag); got != want {
			t.Errorf("proto.ValidTag(%q) = %v, tagRE says %v", tag, got, want)
		}
	})
}

func tagSamples() []string {
	return []string{
		"", "a", "_", ".", "-", "A.b-c_d", "20261117031500_prune_ns_name_tag", "latest",
		".hidden", "-dash", "a:b", "sha256:abc", "a/b", "a b", "a\n", "\na", "tag\x00",
		"é", "aé", "a\xff", "v1.0+build",
		strings.Repeat("a", 127), strings.Repeat("a", 128), strings.Repeat("a", 129),
		"_" + strings.Repeat("-", 127), "_" + strings.Repeat("-", 128),
	}
}
