package testrig

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/tagsweep/tagsweep/worker"
)

// Workers are workers the rig runs until Stop, the end of the context they were started
// with, or the rig's Close.
type Workers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	errs   []error // each worker's Run error, in order
	ids    []string
}

// StartWorkers builds n workers with cfg (see Worker) and runs them. Each worker's ID is
// cfg.ID (default "w") followed by its index: w0, w1, ...
func (r *Rig) StartWorkers(ctx context.Context, n int, cfg worker.Config, log *slog.Logger) (*Workers, error) {
	ctx, cancel := context.WithCancel(ctx)
	ws := &Workers{cancel: cancel, errs: make([]error, n)}
	prefix := cmp.Or(cfg.ID, "w")
	built := make([]*worker.Worker, n)
	for i := range n {
		c := cfg
		c.ID = prefix + strconv.Itoa(i)
		wlog := log
		if log != nil {
			wlog = log.With("worker", c.ID)
		}
		w, err := r.Worker(c, wlog)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("worker %s: %w", c.ID, err)
		}
		built[i] = w
		ws.ids = append(ws.ids, c.ID)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		return nil, errors.New("testrig: starting workers on a closed rig")
	}
	r.workers = append(r.workers, ws)
	r.mu.Unlock()
	for i, w := range built {
		ws.wg.Go(func() { ws.errs[i] = w.Run(ctx) })
	}
	return ws, nil
}

// Stop stops the workers, waits until every Run has returned, and returns their errors,
// each naming its worker. Later calls return the same.
func (ws *Workers) Stop() error {
	ws.once.Do(func() {
		ws.cancel()
		ws.wg.Wait()
	})
	var errs []error
	for i, err := range ws.errs {
		if err != nil {
			errs = append(errs, fmt.Errorf("worker %s: %w", ws.ids[i], err))
		}
	}
	return errors.Join(errs...)
}
