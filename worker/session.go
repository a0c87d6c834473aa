package worker

// This file: the registry calls of a delivery, through a client renewed when its credentials
// are refused and under the worker's rate bound.

import (
	"context"
	"errors"
	"sync"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// session is the registry client one delivery of a prune shard calls. A call the registry
// refuses for the client's credentials (registry.ErrUnauthorized) is made once more with a
// fresh client: a token the registry expired or revoked before the client expected stays
// refused until the client fetches another, and regclient fetches none on a 401 it thinks it
// has answered. Without the fresh client every call left in the delivery would fail, and on
// the shard's last delivery its deletes would be counted failed although a retry deletes them.
type session struct {
	w   *Worker
	run proto.RunRecord

	mu sync.Mutex
	e  *runEntry
}

// entry returns the run's entry the session calls through now.
func (s *session) entry() *runEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.e
}

// do calls f with the session's client, and once more with a fresh one if the registry
// refused the credentials. A second refusal is returned: the credentials themselves are bad.
func (s *session) do(ctx context.Context, f func(registry.Client) error) error {
	e := s.entry()
	err := f(e.client)
	if !errors.Is(err, registry.ErrUnauthorized) || ctx.Err() != nil {
		return err
	}
	fresh, rerr := s.renew(ctx, e)
	if rerr != nil {
		return err
	}
	return f(fresh.client)
}

// renew replaces stale, the entry whose client was refused, by one with a fresh client,
// unless another call (of this delivery or another slot's) did already: a refused token
// costs one reconnection, not one per call in flight.
func (s *session) renew(ctx context.Context, stale *runEntry) (*runEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != stale {
		return s.e, nil
	}
	s.w.forget(s.run.RunID, stale)
	e, err := s.w.cachedRun(ctx, s.run)
	if err != nil {
		return nil, err
	}
	s.e = e
	return e, nil
}

// wait takes a token from the worker-wide rate limiter.
func (w *Worker) wait(ctx context.Context) error {
	if w.limiter == nil {
		return nil
	}
	return w.limiter.Wait(ctx)
}

// paced is a Lister whose calls take a token from the worker-wide rate limiter first.
type paced struct {
	w *Worker
	l registry.Lister
}

func (p paced) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	if err := p.w.wait(ctx); err != nil {
		return registry.Page{}, err
	}
	return p.l.List(ctx, repo, last, n)
}
