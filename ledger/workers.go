package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// RegisterEvery is how often a running worker renews its registration. A registration not
// renewed for three of these is of a worker gone; one not renewed for an hour is removed.
const RegisterEvery = 30 * time.Second

const (
	registrationLive = 3 * RegisterEvery
	registrationKept = time.Hour
)

// Register records, or renews, that worker id runs with slots slots.
func (l *Ledger) Register(ctx context.Context, id string, slots int) error {
	data, err := json.Marshal(proto.WorkerRecord{V: proto.Version, ID: id, Slots: slots, Heartbeat: l.now().UTC()})
	if err != nil {
		return fmt.Errorf("encoding the registration of worker %s: %w", id, err)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	if _, err := l.state.Put(ctx, proto.WorkerKey(id), data); err != nil {
		return fmt.Errorf("registering worker %s: %w", id, err)
	}
	return nil
}

// Unregister removes worker id's registration (a worker that stops).
func (l *Ledger) Unregister(ctx context.Context, id string) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	if err := l.state.Delete(ctx, proto.WorkerKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("unregistering worker %s: %w", id, err)
	}
	return nil
}

// Slots returns how many slots the workers registered and alive have together, and how many
// workers those are. It removes the registrations that were not renewed for an hour, so that
// workers come and gone do not pile up.
func (l *Ledger) Slots(ctx context.Context) (slots, workers int, err error) {
	recs, err := listRecords[proto.WorkerRecord](ctx, l, "worker.*")
	if err != nil {
		return 0, 0, fmt.Errorf("listing worker registrations: %w", err)
	}
	now := l.now()
	for _, r := range recs {
		switch age := now.Sub(r.Heartbeat); {
		case age <= registrationLive:
			slots += r.Slots
			workers++
		case age > registrationKept:
			dctx, cancel := opContext(ctx)
			_ = l.state.Delete(dctx, proto.WorkerKey(r.ID)) // the next listing tries again
			cancel()
		}
	}
	return slots, workers, nil
}
