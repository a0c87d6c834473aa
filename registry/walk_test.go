package registry

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

// pagedLister serves tags (sorted) with a page function that decides, from the honest page
// (at most n tags after last, and whether more follow), what the registry answers.
type pagedLister struct {
	tags  []string
	lie   func(last string, page []string, more bool) ([]string, bool)
	calls []string // last= of every call
}

func (p *pagedLister) List(_ context.Context, _, last string, n int) (Page, error) {
	p.calls = append(p.calls, last)
	i, found := slices.BinarySearch(p.tags, last)
	if found {
		i++
	}
	j := min(i+n, len(p.tags))
	page, more := slices.Clone(p.tags[i:j]), j < len(p.tags)
	if p.lie != nil {
		page, more = p.lie(last, page, more)
	}
	return Page{Tags: page, More: more}, nil
}

// walkAll walks r to its end with Walk.Pages, at most 100 pages.
func walkAll(l Lister, r proto.Range, n int) ([]string, error) {
	var got []string
	pages := 0
	for in, err := range NewWalk(r, "").Pages(context.Background(), l, "repo", n) {
		if err != nil {
			return got, err
		}
		if pages++; pages > 100 {
			return got, errors.New("no end after 100 pages")
		}
		got = append(got, in...)
	}
	return got, nil
}

func TestWalk(t *testing.T) {
	tags := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "b1", "b2"}
	all := proto.Range{After: "", Through: "zz"}
	tests := []struct {
		name      string
		lie       func(last string, page []string, more bool) ([]string, bool)
		r         proto.Range
		n         int
		want      []string
		wantCalls int   // list calls, 0 = do not check
		wantErr   error // nil = no error
	}{
		{name: "honest, ends past the range", r: proto.Range{After: "a2", Through: "a6"}, n: 3,
			want: []string{"a3", "a4", "a5", "a6"}, wantCalls: 2},
		{name: "honest, ends at the last tag: one call more", r: all, n: 3, want: tags, wantCalls: 4},
		{name: "full final page with Link (Distribution)", r: all, n: 3, want: tags,
			lie: func(_ string, p []string, more bool) ([]string, bool) { return p, more || len(p) == 3 }},
		{name: "pages capped at 2 without Link", r: all, n: 3, want: tags,
			lie: func(_ string, p []string, _ bool) ([]string, bool) { return p[:min(2, len(p))], false }},
		{name: "first page short without Link", r: all, n: 5, want: tags,
			lie: func(last string, p []string, more bool) ([]string, bool) {
				if last == "" {
					return p[:1], false
				}
				return p, more
			}},
		{name: "empty page with Link, once", r: all, n: 3, want: tags,
			lie: func() func(string, []string, bool) ([]string, bool) {
				lied := false
				return func(last string, p []string, more bool) ([]string, bool) {
					if last == "a3" && !lied {
						lied = true
						return nil, true
					}
					return p, more
				}
			}()},
		{name: "empty pages with Link, repeated", r: all, n: 3, want: []string{"a1", "a2", "a3"}, wantErr: ErrIncompleteListing,
			lie: func(last string, p []string, more bool) ([]string, bool) {
				if last == "a3" {
					return nil, true
				}
				return p, more
			}},
		{name: "out of order page", r: all, n: 3, want: []string{"a1", "a2", "a3"}, wantErr: ErrBadPage,
			lie: func(last string, p []string, more bool) ([]string, bool) {
				if last == "a3" {
					return []string{"a1"}, true
				}
				return p, more
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &pagedLister{tags: tags, lie: tc.lie}
			got, err := walkAll(l, tc.r, tc.n)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("walk error = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("walk = %q, want %q", got, tc.want)
			}
			if tc.wantCalls > 0 && len(l.calls) != tc.wantCalls {
				t.Errorf("walk made %d list calls (after %q), want %d", len(l.calls), l.calls, tc.wantCalls)
			}
		})
	}
}

func TestWalkNarrow(t *testing.T) {
	l := &pagedLister{tags: []string{"a1", "a2", "a3", "a4", "a5"}}
	w := NewWalk(proto.Range{Through: "a5"}, "")
	in, done, err := w.Next(t.Context(), l, "repo", 2)
	if err != nil || done || !slices.Equal(in, []string{"a1", "a2"}) {
		t.Fatalf("first page = %q, %v, %v", in, done, err)
	}
	w.Narrow("a3") // a split kept (a0, a3]
	in, done, err = w.Next(t.Context(), l, "repo", 2)
	if err != nil || !done || !slices.Equal(in, []string{"a3"}) {
		t.Errorf("after Narrow(a3) = %q, %v, %v; want [a3], done", in, done, err)
	}
}

func TestFirstAfter(t *testing.T) {
	tags := []string{"a1", "a2"}
	tests := []struct {
		name    string
		lie     func(string, []string, bool) ([]string, bool)
		after   string
		want    string
		wantOK  bool
		wantErr error
	}{
		{name: "a tag", after: "a1", want: "a2", wantOK: true},
		{name: "none", after: "a2"},
		{name: "empty with Link is not the end", after: "a1", wantErr: ErrIncompleteListing,
			lie: func(string, []string, bool) ([]string, bool) { return nil, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := FirstAfter(t.Context(), &pagedLister{tags: tags, lie: tc.lie}, "repo", tc.after)
			if got != tc.want || ok != tc.wantOK || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("FirstAfter(%q) = %q, %v, %v; want %q, %v, %v", tc.after, got, ok, err, tc.want, tc.wantOK, tc.wantErr)
			}
		})
	}
}

// Breaking off Pages leaves the Walk after the last page taken: a second Pages goes on there.
func TestWalkPagesBreakOff(t *testing.T) {
	l := &pagedLister{tags: []string{"a1", "a2", "a3", "a4", "a5"}}
	w := NewWalk(proto.Range{Through: "a4"}, "")
	var got [][]string
	for in, err := range w.Pages(t.Context(), l, "repo", 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, in)
		break
	}
	for in, err := range w.Pages(t.Context(), l, "repo", 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, in)
	}
	want := [][]string{{"a1", "a2"}, {"a3", "a4"}}
	if !slices.EqualFunc(got, want, slices.Equal) || !w.Done() {
		t.Errorf("pages = %q (done %v), want %q, done", got, w.Done(), want)
	}
}
