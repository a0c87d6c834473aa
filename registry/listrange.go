package registry

import (
	"context"
	"fmt"

	"github.com/tagsweep/tagsweep/proto"
)

// ListRange lists every tag of repo in r, page by page (n tags a page), checking each page
// (CheckPage). It ends where a worker's listing of a shard ends: at a tag past r.Through, an
// empty page, or a short page without a next link; it never trusts the link alone.
func ListRange(ctx context.Context, l Lister, repo string, r proto.Range, n int) ([]string, error) {
	var out []string
	last := r.After
	for {
		page, err := l.List(ctx, repo, last, n)
		if err != nil {
			return out, fmt.Errorf("listing %s after %q: %w", repo, last, err)
		}
		if err := CheckPage(last, page.Tags); err != nil {
			return out, err
		}
		for _, t := range page.Tags {
			if t > r.Through {
				return out, nil
			}
			out = append(out, t)
		}
		if len(page.Tags) == 0 || (!page.More && len(page.Tags) < n) {
			return out, nil
		}
		last = page.Tags[len(page.Tags)-1]
	}
}
