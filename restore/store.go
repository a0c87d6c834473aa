package restore

import (
	"context"
	"fmt"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// flushEvery is how many outcomes are stored on the audit stream at once.
const flushEvery = 1000

// auditStore stores a restore's outcomes on the audit stream as they come, flushEvery at a
// time, by a goroutine of its own so that the restores do not wait for the stream; an
// interrupted restore leaves its record of what it did. The first failure to store cancels
// the restore, and the outcomes after it are dropped.
type auditStore struct {
	batches chan []proto.AuditEvent
	pending []proto.AuditEvent
	done    chan struct{}
	// Written by the storing goroutine, read once done is closed.
	stored int
	err    error
}

// startStore starts storing outcomes under the restore's ID. The message IDs of a restore
// started at start are kept apart from an earlier attempt's under the same restore ID.
// cancel stops the restore when outcomes cannot be stored.
func (r *Restore) startStore(ctx context.Context, cancel context.CancelCauseFunc, start time.Time) *auditStore {
	s := &auditStore{batches: make(chan []proto.AuditEvent, 1), done: make(chan struct{})}
	source := fmt.Sprintf("%d", start.UnixNano())
	go func() {
		defer close(s.done)
		seq := 0
		for b := range s.batches {
			if s.err != nil {
				continue
			}
			// Stored even while ctx ends: they record tags already put back.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			err := r.l.AppendAudit(sctx, r.cfg.ID, fmt.Sprintf("%s-%d", source, seq), b)
			scancel()
			seq++
			if err != nil {
				s.err = fmt.Errorf("storing the restore's audit events: %w", err)
				cancel(s.err)
				continue
			}
			s.stored += len(b)
		}
	}()
	return s
}

// add stores ev with the next batch.
func (s *auditStore) add(ev proto.AuditEvent) {
	s.pending = append(s.pending, ev)
	if len(s.pending) >= flushEvery {
		s.batches <- s.pending
		s.pending = make([]proto.AuditEvent, 0, flushEvery)
	}
}

// close stores what is pending, waits until every batch is stored, and returns how many
// outcomes were stored and the first failure to store them.
func (s *auditStore) close() (stored int, err error) {
	if len(s.pending) > 0 {
		s.batches <- s.pending
	}
	close(s.batches)
	<-s.done
	return s.stored, s.err
}
