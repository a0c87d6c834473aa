package ledger

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// Bounds of one audit message, well under NATS's default maximum payload (1 MiB): a batch
// holds at most auditBatchEvents events and auditBatchBytes of JSON (a single event larger
// than that goes alone). An event's Error is cut to auditErrorBytes, so that no event comes
// near the maximum payload and blocks its claim's writes.
const (
	auditBatchEvents = 1000
	auditBatchBytes  = 256 << 10
	auditErrorBytes  = 4 << 10
)

// auditEntry is an event appended to a claim and not yet cut into a batch.
type auditEntry struct {
	run, tag string
	data     []byte // the event, encoded
}

// auditMsg is a batch of a claim's audit events, encoded once and published under the same
// message ID however often it is tried, so that the stream stores it at most once.
type auditMsg struct {
	subject, id string
	events      int
	data        []byte
}

// Audit appends an event to the claim's pending audit events; nothing is sent. The claim's
// next write (Checkpoint, Split, Done, Fail, Retry, Release) first stores every event appended
// so far on the run's audit stream, as one message per batch (in practice one per page), and
// fails while it cannot, keeping the events for the write after it: Audit never drops an
// event, and a batch re-published after a lost acknowledgement is stored at most once (within
// the audit stream's de-duplication window). Run, shard and repository default to the claim's.
// Audit is safe for concurrent use; it fails only on an event that could never be stored (a
// run ID that is not a valid token). A dry run's event is dropped when the ledger is
// configured with NoDryRunAudit.
func (c *Claim) Audit(ev proto.AuditEvent) error {
	if ev.Outcome == proto.OutcomeDryRun && c.l.cfg.NoDryRunAudit {
		return nil
	}
	ev.V = proto.Version
	ev.RunID = cmp.Or(ev.RunID, c.auditAs.RunID)
	ev.ShardID = cmp.Or(ev.ShardID, c.auditAs.ShardID)
	ev.Repository = cmp.Or(ev.Repository, c.auditAs.Repository)
	if ev.Time.IsZero() {
		ev.Time = c.l.now().UTC()
	}
	if !proto.ValidToken(ev.RunID) {
		return fmt.Errorf("audit event of %s: run id %q is not a valid token", ev.Tag, ev.RunID)
	}
	ev.Error = truncate(ev.Error, auditErrorBytes)
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding audit event of %s: %w", ev.Tag, err)
	}
	c.mu.Lock()
	c.events = append(c.events, auditEntry{run: ev.RunID, tag: ev.Tag, data: data})
	c.mu.Unlock()
	return nil
}

// flushAudit stores the claim's pending audit events: it cuts the events appended so far into
// batches, then publishes every batch not yet stored, in order, synchronously. A batch whose
// publish fails (or whose acknowledgement is lost) stays, with its message ID, for the next
// flush; events appended meanwhile go into later batches, so a batch never changes once cut.
func (c *Claim) flushAudit(ctx context.Context) error {
	c.mu.Lock()
	evs := c.events
	c.events = nil
	c.mu.Unlock()
	for len(evs) > 0 {
		m, n := c.cutAudit(evs)
		c.batches = append(c.batches, m)
		evs = evs[n:]
	}
	for len(c.batches) > 0 {
		m := c.batches[0]
		pctx, cancel := opContext(ctx)
		_, err := c.l.js.Publish(pctx, m.subject, m.data,
			jetstream.WithMsgID(m.id), jetstream.WithExpectStream(proto.StreamAudit))
		cancel()
		if err != nil {
			pending := 0
			for _, b := range c.batches {
				pending += b.events
			}
			return fmt.Errorf("storing %d audit events: %w", pending, err)
		}
		c.batches[0] = auditMsg{}
		c.batches = c.batches[1:]
	}
	c.batches = nil // drop the emptied backing array
	return nil
}

// cutAudit makes the next batch from the leading events of evs: as many as the bounds allow,
// all of one run. It returns the batch and how many events it took (at least one).
func (c *Claim) cutAudit(evs []auditEntry) (auditMsg, int) {
	hdr := proto.AuditBatch{V: proto.Version, RunID: evs[0].run, ShardID: c.auditAs.ShardID,
		Repository: c.auditAs.Repository, Attempt: c.rec.Attempt}
	head, tail := batchFrame(hdr)
	size := len(head) + len(tail)
	n := 0
	for n < len(evs) && n < auditBatchEvents && evs[n].run == evs[0].run &&
		(n == 0 || size+len(evs[n].data)+1 <= auditBatchBytes) {
		size += len(evs[n].data) + 1
		n++
	}
	data := make([]byte, 0, size)
	data = append(data, head...)
	for i, e := range evs[:n] {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, e.data...)
	}
	data = append(data, tail...)
	// Deterministic and unique within the claim: the position of the batch's first event among
	// the claim's events (a tag may be audited twice), then its tag and size for a reader.
	id := fmt.Sprintf("%s/%s/%d/%d/%s/%d", hdr.RunID, hdr.ShardID, hdr.Attempt, c.cut, evs[0].tag, n)
	c.cut += n
	return auditMsg{subject: proto.AuditSubject(hdr.RunID), id: id, events: n, data: data}, n
}

// batchFrame is the encoding of hdr (an AuditBatch without events) split where its events'
// array goes: head ends with `"events":[`, tail starts with `]`. The events, already encoded,
// are written between the two, so that each is encoded once.
func batchFrame(hdr proto.AuditBatch) (head, tail []byte) {
	hdr.Events = nil
	data, err := json.Marshal(hdr) // strings and ints only: cannot fail
	if err != nil {
		panic(fmt.Sprintf("encoding audit batch header: %v", err))
	}
	const null = `"events":null` // a quote inside a string is escaped, so only the field matches
	i := bytes.LastIndex(data, []byte(null))
	if i < 0 {
		panic("audit batch encoding has no events field")
	}
	head = append(data[:i:i], `"events":[`...)
	tail = append([]byte("]"), data[i+len(null):]...)
	return head, tail
}

// truncate cuts s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	const mark = "…(truncated)"
	if len(s) <= n {
		return s
	}
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Audit iterates over a run's audit events in the order they were stored, up to the last
// event stored when the iteration starts. Each message of the stream is a batch of events
// (proto.AuditBatch); a message that is not is an error wrapping ErrBadRecord. A missing audit
// stream is an error wrapping ErrNoLedger (and jetstream.ErrStreamNotFound). An error ends the
// iteration (it is yielded last). It only reads, so a bound ledger (Bind) serves.
func (l *Ledger) Audit(ctx context.Context, runID string) iter.Seq2[proto.AuditEvent, error] {
	return func(yield func(proto.AuditEvent, error) bool) {
		if !proto.ValidToken(runID) { // a wildcard would read other runs' events
			yield(proto.AuditEvent{}, fmt.Errorf("audit: run id %q is not a valid token", runID))
			return
		}
		subject := proto.AuditSubject(runID)
		stream, err := l.js.Stream(ctx, proto.StreamAudit)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: stream %s: %w: %w", runID, proto.StreamAudit, ErrNoLedger, err))
			return
		}
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
		cons, err := l.js.OrderedConsumer(ctx, proto.StreamAudit, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{subject},
		})
		if err != nil {
			yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s: %w", runID, err))
			return
		}
		for {
			// A message holds up to auditBatchEvents events (usually a page): fetch a few.
			batch, err := cons.Fetch(64, jetstream.FetchMaxWait(5*time.Second))
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
				var b proto.AuditBatch
				err = decode(msg.Data(), &b)
				if err == nil && len(b.Events) == 0 { // a batch is never empty: not a batch
					err = fmt.Errorf("%w: no audit events in the message", ErrBadRecord)
				}
				if err != nil {
					yield(proto.AuditEvent{}, fmt.Errorf("audit of run %s at sequence %d: %w", runID, md.Sequence.Stream, err))
					return
				}
				for _, ev := range b.Events {
					if !yield(ev, nil) {
						return
					}
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

// AppendAudit stores events on the audit stream of runID outside any shard claim (a
// restore's events), in batches within the same bounds as a claim's. Each batch is published
// with a message ID made of source, which the caller keeps unique to one writer and one call,
// and the batch's position, so that a retried call stores nothing twice within the stream's
// de-duplication window. An event's run defaults to runID. It creates nothing: a missing audit
// stream is an error wrapping jetstream.ErrStreamNotFound (or ErrNoStreamResponse).
func (l *Ledger) AppendAudit(ctx context.Context, runID, source string, events []proto.AuditEvent) error {
	if !proto.ValidToken(runID) {
		return fmt.Errorf("audit of run %q: not a valid token", runID)
	}
	entries := make([]auditEntry, len(events))
	for i, ev := range events {
		ev.V = proto.Version
		ev.RunID = runID
		if ev.Time.IsZero() {
			ev.Time = time.Now().UTC()
		}
		ev.Error = truncate(ev.Error, auditErrorBytes)
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encoding audit event of %s: %w", ev.Tag, err)
		}
		entries[i] = auditEntry{run: runID, tag: ev.Tag, data: data}
	}
	head, tail := batchFrame(proto.AuditBatch{V: proto.Version, RunID: runID})
	for pos := 0; pos < len(entries); {
		size, n := len(head)+len(tail), 0
		for pos+n < len(entries) && n < auditBatchEvents &&
			(n == 0 || size+len(entries[pos+n].data)+1 <= auditBatchBytes) {
			size += len(entries[pos+n].data) + 1
			n++
		}
		data := make([]byte, 0, size)
		data = append(data, head...)
		for i, e := range entries[pos : pos+n] {
			if i > 0 {
				data = append(data, ',')
			}
			data = append(data, e.data...)
		}
		data = append(data, tail...)
		id := fmt.Sprintf("%s/%s/%d/%d", runID, source, pos, n)
		pctx, cancel := opContext(ctx)
		_, err := l.js.Publish(pctx, proto.AuditSubject(runID), data,
			jetstream.WithMsgID(id), jetstream.WithExpectStream(proto.StreamAudit))
		cancel()
		if err != nil {
			return fmt.Errorf("storing %d audit events of run %s: %w", len(entries)-pos, runID, err)
		}
		pos += n
	}
	return nil
}
