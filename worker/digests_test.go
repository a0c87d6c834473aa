package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

// digestRegistry is a fakeRegistry that also reads digests (HEAD), each tag's digest derived
// from its name; failHead makes the HEAD of those tags fail as a registry error would.
type digestRegistry struct {
	*fakeRegistry
	mu       sync.Mutex
	heads    []string
	failHead map[string]bool
}

func tagDigest(tag string) string {
	return fmt.Sprintf("sha256:%064x", len(tag)*7919+int(tag[len(tag)-1]))
}

func (d *digestRegistry) Digest(ctx context.Context, repo, tag string) (string, error) {
	d.mu.Lock()
	d.heads = append(d.heads, tag)
	fail := d.failHead[tag]
	d.mu.Unlock()
	if fail {
		return "", errors.New("http 500: the registry is having a bad day")
	}
	d.fakeRegistry.mu.Lock()
	defer d.fakeRegistry.mu.Unlock()
	if _, ok := slices.BinarySearch(d.tags, tag); !ok {
		return "", fmt.Errorf("%s:%s: %w", repo, tag, registry.ErrNotFound)
	}
	return tagDigest(tag), nil
}

// TestRecordDigests: a run that records digests stores, in each deletion's audit event, the
// digest the tag pointed at, read before the delete; a tag whose digest cannot be read is
// never deleted; the worker flag records for a run that did not ask.
func TestRecordDigests(t *testing.T) {
	tests := []struct {
		name           string
		policy, worker bool
	}{
		{name: "the run asks", policy: true},
		{name: "the worker is told to", worker: true},
		{name: "neither"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, ledger.Config{MaxDeliver: 2})
			tags := tagsFor(300)
			p := testPolicy()
			p.RecordDigests = tc.policy
			del, _ := eligible(t, p, tags)
			failing := del[len(del)/2]
			reg := &digestRegistry{fakeRegistry: newFake(tags), failHead: map[string]bool{failing: true}}
			e.seed(t, "r1", p, proto.Range{After: "", Through: "20261101000000"})
			e.startWorkers(t, 1, worker.Config{PageSize: 25, RecordDigests: tc.worker, RetryDelay: 20 * time.Millisecond}, reg, nil)
			e.waitShards(t, "r1", 1)

			record := tc.policy || tc.worker
			_, deleted := reg.snapshot()
			if record && slices.Contains(deleted, failing) {
				t.Errorf("%s was deleted although its digest could not be read", failing)
			}
			reg.mu.Lock()
			heads := len(reg.heads)
			reg.mu.Unlock()
			if !record && heads != 0 {
				t.Errorf("%d digest reads in a run that records none", heads)
			}
			events := 0
			for ev, err := range e.l.Audit(testCtx(t), "r1") {
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case ev.Outcome == proto.OutcomeDeleted && record && ev.Digest != tagDigest(ev.Tag):
					t.Errorf("deleted %s recorded digest %q, want %s", ev.Tag, ev.Digest, tagDigest(ev.Tag))
				case ev.Outcome == proto.OutcomeDeleted && !record && ev.Digest != "":
					t.Errorf("deleted %s recorded digest %q in a run that records none", ev.Tag, ev.Digest)
				case ev.Tag == failing && record && ev.Outcome != proto.OutcomeFailed:
					t.Errorf("%s: outcome %s, want failed", failing, ev.Outcome)
				}
				if ev.Outcome == proto.OutcomeDeleted {
					events++
				}
			}
			if events != len(deleted) || len(deleted) < len(del)-1 {
				t.Errorf("%d deleted events for %d deletes of %d eligible", events, len(deleted), len(del))
			}
		})
	}
}
