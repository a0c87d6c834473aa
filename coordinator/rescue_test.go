package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// strandingWorker works shards like fakeWorker, except the first message it is handed: each
// of that message's deliveries before its last is claimed and released (a graceful stop), and
// its last is given back without a claim (a Nak). A later message of that shard is worked like
// any other.
func (e *env) strandingWorker(t *testing.T, f *lister) {
	t.Helper()
	var firstSeq uint64
	e.consumeShards(t, func(ctx context.Context, msg jetstream.Msg, m proto.ShardMessage, md *jetstream.MsgMetadata) {
		if firstSeq == 0 {
			firstSeq = md.Sequence.Stream
		}
		if md.Sequence.Stream == firstSeq {
			if int(md.NumDelivered) < e.lc.MaxDeliver {
				if claim, err := e.l.Claim(ctx, m.RunID, m.ShardID, "stranding", int(md.NumDelivered)); err == nil {
					_ = claim.Release(ctx)
				}
			}
			_ = msg.Nak()
			return
		}
		claim, err := e.l.Claim(ctx, m.RunID, m.ShardID, "stranding", int(md.NumDelivered))
		if errors.Is(err, ledger.ErrTerminal) {
			_ = msg.Ack()
			return
		}
		if err != nil {
			_ = msg.Nak()
			return
		}
		rec := claim.Record()
		if claim.Checkpoint(ctx, rec.Range.Through, proto.Counters{}) == nil && claim.Done(ctx) == nil {
			_ = msg.Ack()
		}
	})
}

// A shard whose message's last delivery was given back before it was claimed keeps a message
// that JetStream delivers no more, and that refuses a new one on the shard's subject; its
// record stays pending below MaxDeliver. The coordinator sees from the queue that no delivery
// will reach the shard and queues it afresh, and the run ends with every shard done.
func TestUnclaimedLastDeliveryRescued(t *testing.T) {
	e := newEnv(t)
	e.lc.StaleAfter = 500 * time.Millisecond
	var err error
	if e.l, err = ledger.Open(testCtx(t), e.js, e.lc); err != nil {
		t.Fatal(err)
	}
	f := newLister(map[string][]string{"ci/a": dayTags(6, 3)})
	e.strandingWorker(t, f)
	c, err := coordinator.New(e.config("r1", "ci/a"), e.connect(t), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	rep, err := c.Run(ctx)
	if err != nil {
		t.Fatalf("Run = %v: a shard given back unclaimed on its last delivery was never delivered again", err)
	}
	if rep.Shards.Done != rep.Shards.Total || rep.Shards.Total < 2 {
		t.Fatalf("shards %+v, want every shard done", rep.Shards)
	}
}
