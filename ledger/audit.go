package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// AppendAudit appends one event to its run's audit stream and waits until it is stored.
// Workers append through (*Claim).Audit, which is asynchronous and flushed before each
// checkpoint.
func (l *Ledger) AppendAudit(ctx context.Context, ev proto.AuditEvent) error {
	if !proto.ValidToken(ev.RunID) {
		return fmt.Errorf("audit event: run id %q is not a valid token", ev.RunID)
	}
	ev.V = proto.Version
	if ev.Time.IsZero() {
		ev.Time = l.now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding audit event: %w", err)
	}
	if _, err := l.js.Publish(ctx, proto.AuditSubject(ev.RunID), data, jetstream.WithExpectStream(proto.StreamAudit)); err != nil {
		return fmt.Errorf("appending audit event: %w", err)
	}
	return nil
}

// Audit iterates over a run's audit events in the order they were stored, up to the last
// event stored when the iteration starts. An error ends the iteration (it is yielded last).
func (l *Ledger) Audit(ctx context.Context, runID string) iter.Seq2[proto.AuditEvent, error] {
	return ReadAudit(ctx, l.js, runID)
}

// ReadAudit is Audit without a Ledger, for readers that must not create or update anything
// (Open would reconfigure the streams to the reader's Config): it only reads the audit
// stream. A missing audit stream is an error wrapping jetstream.ErrStreamNotFound.
func ReadAudit(ctx context.Context, js jetstream.JetStream, runID string) iter.Seq2[proto.AuditEvent, error] {
	return func(yield func(proto.AuditEvent, error) bool) {
		if !proto.ValidToken(runID) { // a wildcard would read other runs' events
			yield(proto.AuditEvent{}, fmt.Errorf("audit: run id %q is not a valid token", runID))
			return
		}
		subject := proto.AuditSubject(runID)
		stream, err := js.Stream(ctx, proto.StreamAudit)
		if err != nil {
			yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
			return
		}
		last, err := stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return // no events
		}
		if err != nil {
			yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
			return
		}
		cons, err := js.OrderedConsumer(ctx, proto.StreamAudit, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{subject},
		})
		if err != nil {
			yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
			return
		}
		for {
			batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
				return
			}
			n := 0
			for msg := range batch.Messages() {
				n++
				md, err := msg.Metadata()
				if err != nil {
					yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
					return
				}
				var ev proto.AuditEvent
				if err := decode(msg.Data(), &ev); err != nil {
					yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s at sequence %d: %w", runID, md.Sequence.Stream, err))
					return
				}
				if !yield(ev, nil) {
					return
				}
				if md.Sequence.Stream >= last.Sequence {
					return
				}
			}
			if err := batch.Error(); err != nil {
				yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
				return
			}
			if n == 0 { // stored events are available at once: they were removed meanwhile
				yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: events up to sequence %d are no longer stored", runID, last.Sequence))
				return
			}
		}
	}
}
