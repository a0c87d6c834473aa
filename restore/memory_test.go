package restore_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/restore"
)

// BenchmarkRestoreHeap restores a run of 400,000 deletions against a registry where every tag
// exists again (each is skipped, so the registry costs nothing) and reports the peak of the
// live heap during the restore (the whole process, the embedded NATS server included): what
// the restore holds grows with the deleted tags or does not.
//
//	go test -run '^$' -bench RestoreHeap -benchtime 2x ./restore
func BenchmarkRestoreHeap(b *testing.B) {
	const n = 400_000
	// On file storage, so that the audit stream is not in the heap measured.
	rig := testrig.New(b, testrig.Config{MaxMemory: 64 << 20, MaxStore: 1 << 30,
		Ledger: ledger.Config{Storage: jetstream.FileStorage}})
	js := rig.JS(b)
	evs := make([]proto.AuditEvent, 0, n)
	for i := range n {
		evs = append(evs, proto.AuditEvent{Tag: fmt.Sprintf("20261201%06d_prune_tag-%07d", i%1_000_000, i),
			Outcome: proto.OutcomeDeleted, Digest: digest(i % 50), Time: time.Now()})
	}
	if _, err := rig.Ledger().CreateRun(b.Context(), proto.RunRecord{RunID: "big", Registry: "quay.example",
		Repositories: []string{repo}, Policy: proto.Policy{RecordDigests: true}, State: proto.RunDone}); err != nil {
		b.Fatal(err)
	}
	for i := range evs {
		evs[i].Repository = repo
	}
	if err := rig.Ledger().AppendAudit(b.Context(), "big", "seed", evs); err != nil {
		b.Fatal(err)
	}
	evs = nil
	var peak uint64
	for i := 0; b.Loop(); i++ {
		runtime.GC()
		stop := sampleHeap(&peak)
		r, err := restore.New(restore.Config{RunID: "big", ID: fmt.Sprintf("big-restore-%d", i), Manifests: existing{},
			Concurrency: 64}, bound(b, js), nil)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := r.Run(b.Context())
		stop()
		if err != nil || rep.Tags.Skipped != n {
			b.Fatalf("restore: %+v, %v", rep.Tags, err)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// existing is a registry where every tag exists.
type existing struct{}

func (existing) Digest(_ context.Context, _, _ string) (string, error) { return digest(0), nil }
func (existing) Put(_ context.Context, _, _, _ string) error           { return registry.ErrManifestGone }

// sampleHeap records the largest live heap seen in *peak every 5 ms until stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			*peak = max(*peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
