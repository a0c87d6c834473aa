package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// ErrNoLedger: Bind found no tagsweep state at the server (no run was ever recorded there).
var ErrNoLedger = errors.New("no tagsweep state")

// Bind returns a ledger over a deployment's existing buckets and streams without creating or
// changing any, for the tools that read a deployment's state (status) or make single record
// changes (stop) and must not impose their settings on it. A server without tagsweep's state
// bucket is ErrNoLedger. The shard queue is bound when it exists; the calls that need it
// (Rescue, Requeue, FailAbandoned) are for processes that Open the ledger.
func Bind(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ledger, error) {
	l := &Ledger{js: js, cfg: cfg.withDefaults(), now: time.Now}
	var err error
	if l.state, err = js.KeyValue(ctx, proto.BucketState); errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s: %w", proto.BucketState, ErrNoLedger)
	} else if err != nil {
		return nil, fmt.Errorf("binding bucket %s: %w", proto.BucketState, err)
	}
	if l.leases, err = js.KeyValue(ctx, proto.BucketLeases); errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s: %w", proto.BucketLeases, ErrNoLedger)
	} else if err != nil {
		return nil, fmt.Errorf("binding bucket %s: %w", proto.BucketLeases, err)
	}
	if l.cons, err = js.Consumer(ctx, proto.StreamShards, proto.ConsumerWorkers); err != nil &&
		!errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("binding consumer %s: %w", proto.ConsumerWorkers, err)
	}
	return l, nil
}

// Runs returns every run record, in key order.
func (l *Ledger) Runs(ctx context.Context) ([]proto.RunRecord, error) {
	out, err := listRecords[proto.RunRecord](ctx, l, "run.*")
	if err != nil {
		return nil, fmt.Errorf("listing runs: %w", err)
	}
	return out, nil
}

// AllShards returns the shard records of every run, by run ID.
func (l *Ledger) AllShards(ctx context.Context) (map[string][]proto.ShardRecord, error) {
	all, err := listRecords[proto.ShardRecord](ctx, l, "shard.>")
	if err != nil {
		return nil, fmt.Errorf("listing shards: %w", err)
	}
	out := make(map[string][]proto.ShardRecord)
	for _, s := range all {
		out[s.RunID] = append(out[s.RunID], s)
	}
	return out, nil
}

// WatchRuns streams run records: first every current one, then each change as it is written.
// The channel is closed when ctx is done or the watch breaks (the caller watches again).
// Undecodable records are skipped.
func (l *Ledger) WatchRuns(ctx context.Context) (<-chan proto.RunRecord, error) {
	return watchRecords[proto.RunRecord](ctx, l, "run.*")
}

// watchRecords streams the values of the state bucket's keys matching filter.
func watchRecords[T any](ctx context.Context, l *Ledger, filter string) (<-chan T, error) {
	w, err := l.state.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", filter, err)
	}
	out := make(chan T)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				var rec T
				if decode(e.Value(), &rec) != nil {
					continue
				}
				select {
				case out <- rec:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// WatchRun streams a run's record: first as it is, then each change as it is written. The
// channel is closed when ctx is done or the watch breaks.
func (l *Ledger) WatchRun(ctx context.Context, runID string) (<-chan proto.RunRecord, error) {
	return watchRecords[proto.RunRecord](ctx, l, proto.RunKey(runID))
}
