// Package pause waits for a duration unless a context ends first: the one sleep of the
// coordinator's and the worker's retry and poll loops.
package pause

import (
	"context"
	"time"
)

// For waits for d, or returns ctx's error when ctx ends first.
func For(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
