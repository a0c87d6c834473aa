package registry

import (
	"context"
	"slices"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

// pagedLister serves tags (sorted) in keyset pages of at most cap tags, with a next link
// when more follow unless noLink.
type pagedLister struct {
	tags   []string
	cap    int
	noLink bool
}

func (p pagedLister) List(_ context.Context, _, last string, n int) (Page, error) {
	i, _ := slices.BinarySearch(p.tags, last)
	if i < len(p.tags) && p.tags[i] == last {
		i++
	}
	j := min(len(p.tags), i+min(n, p.cap))
	return Page{Tags: p.tags[i:j], More: j < len(p.tags) && !p.noLink}, nil
}

func TestListRange(t *testing.T) {
	tags := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, tc := range []struct {
		name string
		l    pagedLister
		r    proto.Range
		want []string
	}{
		{"all", pagedLister{tags: tags, cap: 100}, proto.Range{After: "", Through: "~"}, tags},
		{"inside", pagedLister{tags: tags, cap: 100}, proto.Range{After: "b", Through: "e"}, []string{"c", "d", "e"}},
		{"bounds between tags", pagedLister{tags: tags, cap: 100}, proto.Range{After: "bb", Through: "ee"}, []string{"c", "d", "e"}},
		{"capped pages with links", pagedLister{tags: tags, cap: 2}, proto.Range{After: "", Through: "g"}, tags[:7]},
		{"empty", pagedLister{tags: tags, cap: 100}, proto.Range{After: "h", Through: "~"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ListRange(t.Context(), tc.l, "r", tc.r, 3)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ListRange = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// A registry that repeats a page instead of moving on is an error, not a loop.
	if _, err := ListRange(t.Context(), repeating{}, "r", proto.Range{Through: "~"}, 2); err == nil {
		t.Errorf("ListRange over a registry repeating its first page: no error")
	}
}

type repeating struct{}

func (repeating) List(context.Context, string, string, int) (Page, error) {
	return Page{Tags: []string{"a", "b"}, More: true}, nil
}
