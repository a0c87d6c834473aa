package worker

// This file: one delivery of a shard message, from decoding it to working its shard; settle.go
// ends it.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// delivery is one delivery of a shard message: the message and what this worker learnt of it
// on the way (its run, its claim, the run's policy and client). Its methods settle the
// message (settle.go).
type delivery struct {
	w        *Worker
	l        *ledger.Ledger
	msg      jetstream.Msg
	md       *jetstream.MsgMetadata
	m        proto.ShardMessage
	log      *slog.Logger // with the run and shard; once claimed, the repository and attempt too
	received time.Time
	attempt  int  // the message's delivery count
	final    bool // the message's last delivery: JetStream delivers it no more

	run   proto.RunRecord // read by claimShard
	claim *ledger.Claim   // taken by claimShard
	entry *runEntry       // the run's policy and client, found by prepare
}

// handle ends msg in exactly one of Ack, Nak, NakWithDelay or Term, or in nothing when the
// shard was taken over (fenced) or may have been: it decodes the message, claims its shard,
// works it and settles the message by how the work ended. ctx ends when the worker stops;
// grace and hard outlive it (see stopContexts).
//
// JetStream applies an ack, nak or term to the message's current delivery, whoever holds it,
// so a worker that may have lost its delivery must not send one: after a ledger write that
// failed without being fenced (a timeout), the record is read back (Claim.Verify) and the
// message is touched only while the record still names this delivery.
func (w *Worker) handle(ctx, grace, hard context.Context, l *ledger.Ledger, msg jetstream.Msg) {
	d := w.decode(l, msg)
	if d == nil {
		return
	}
	if ctx.Err() != nil { // handed out while stopping: give it straight back
		d.giveBack(hard, 0, nil)
		return
	}
	if !d.claimShard(ctx, hard) {
		return
	}
	// The shard's work ends when the worker stops (ctx) or an operator stops the run.
	ctx, endShard := w.stops.shardContext(ctx, d.run.RunID)
	defer endShard()
	defer w.cfg.Observer.StartShard(d.m.RunID, d.m.ShardID)()
	err := d.prepare(ctx)
	if err == nil {
		// The heartbeat goes on until the message is settled: the ledger writes after the
		// work may take a while, and the delivery must stay this worker's meanwhile.
		defer w.heartbeat(msg, l.Config().AckWait/3)()
		err = d.work(ctx, grace, hard)
	}
	d.settle(ctx, hard, err)
}

// decode reads msg into a delivery. It terms a message it cannot read, and returns nil then.
func (w *Worker) decode(l *ledger.Ledger, msg jetstream.Msg) *delivery {
	received := time.Now()
	var m proto.ShardMessage
	if err := json.Unmarshal(msg.Data(), &m); err != nil || m.V > proto.Version || !proto.ValidToken(m.RunID) || !proto.ValidToken(m.ShardID) {
		w.log.Error("dropping undecodable shard message", slog.String("subject", msg.Subject()), slog.Any("err", err))
		_ = msg.TermWithReason("undecodable shard message")
		return nil
	}
	log := w.log.With(slog.String("run", m.RunID), slog.String("shard", m.ShardID))
	md, err := msg.Metadata()
	if err != nil {
		log.Error("dropping shard message without metadata", slog.Any("err", err))
		_ = msg.TermWithReason("no metadata")
		return nil
	}
	attempt := int(md.NumDelivered)
	maxDeliver := l.Config().MaxDeliver
	if info := l.Consumer().CachedInfo(); info != nil && info.Config.MaxDeliver > 0 {
		maxDeliver = info.Config.MaxDeliver
	}
	return &delivery{w: w, l: l, msg: msg, md: md, m: m, log: log, received: received,
		attempt: attempt, final: attempt >= maxDeliver}
}

// claimShard reads the shard's run and claims the shard for this delivery. It reports false
// when there is nothing to work on; the message is then settled or given back.
func (d *delivery) claimShard(ctx, hard context.Context) bool {
	run, _, err := d.l.Run(ctx, d.m.RunID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		d.log.Error("dropping shard of an unknown run", slog.Any("err", err))
		_ = d.msg.TermWithReason("unknown run")
		return false
	case err != nil:
		err = fmt.Errorf("reading run record: %w", err)
		d.giveBack(hard, d.retryDelay(err), err)
		return false
	case ledger.HandBack(run):
		// An operator stopped the run: its record stays as it is for the resume, which
		// queues the shard afresh.
		d.log.Info("run stopped; leaving the shard to its resume")
		_ = d.msg.TermWithReason("run stopped")
		return false
	}
	claim, err := d.l.Claim(ctx, d.m.RunID, d.m.ShardID, d.w.cfg.ID, d.attempt)
	switch {
	case errors.Is(err, ledger.ErrTerminal):
		d.log.Info("shard already finished", slog.Any("err", err))
		c, cancel := d.w.ledgerCtx(hard)
		_ = d.msg.DoubleAck(c)
		cancel()
		return false
	case errors.Is(err, ledger.ErrNotFound):
		d.log.Error("dropping shard message without a record", slog.Any("err", err))
		_ = d.msg.TermWithReason("no shard record")
		return false
	case errors.Is(err, ledger.ErrBusy):
		d.giveBack(hard, d.l.Config().AckWait, err)
		return false
	case err != nil:
		err = fmt.Errorf("claiming shard: %w", err)
		d.giveBack(hard, d.retryDelay(err), err)
		return false
	}
	d.run, d.claim = run, claim
	d.log = d.log.With(slog.String("repo", claim.Record().Repository), slog.Int("attempt", d.attempt))
	return true
}

// prepare checks that this worker may work the claimed shard for its run, and finds the run's
// policy and registry client. Its error is a failure for settle.
func (d *delivery) prepare(ctx context.Context) error {
	run, rec := d.run, d.claim.Record()
	if ledger.Stopped(run) {
		return permanent(fmt.Errorf("run %s stopped: %s", run.RunID, cmp.Or(run.Reason, string(run.State))))
	}
	if err := checkKind(run, rec.Kind); err != nil {
		return permanent(err)
	}
	if err := d.w.cfg.Floor.Check(run, rec.Repository, time.Now()); err != nil {
		return permanent(err) // before any client exists: nothing of the shard is listed, tagged or deleted
	}
	entry, err := d.w.cachedRun(ctx, run)
	if err != nil {
		return err
	}
	d.entry = entry
	return nil
}

// work works the claimed shard by its kind. It returns nil when the shard is finished, or why
// it stopped short, for settle.
func (d *delivery) work(ctx, grace, hard context.Context) error {
	rec := d.claim.Record()
	d.log.Info("shard claimed", slog.String("after", rec.Range.After), slog.String("through", rec.Range.Through),
		slog.String("resume", rec.Resume()))
	var err error
	switch rec.Kind {
	case proto.KindFamily:
		err = d.family(ctx, hard)
	case proto.KindPreserve:
		err = d.preserveOne(ctx, hard)
	default:
		err = d.prune(ctx, grace, hard)
	}
	if errors.Is(err, registry.ErrUnauthorized) {
		// The client's credentials were refused after its own retries, for instance a token
		// the registry expired or revoked before the client expected (regclient assumes 60 s
		// and does not refresh on a 401 it thinks it has answered). A prune shard already
		// made the call again with a fresh client (see session); the next delivery builds
		// one in any case, which fetches a fresh token.
		d.w.forget(d.run.RunID, d.entry)
	}
	return err
}

// heartbeat sends InProgress every interval until stop is called; stop waits for it to end.
// A frozen worker (a test's SIGSTOP) sends nothing.
func (w *Worker) heartbeat(msg jetstream.Msg, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(interval, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if !w.freeze.frozen() {
					_ = msg.InProgress()
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
