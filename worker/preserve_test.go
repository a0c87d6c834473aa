package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// payloads is the Reader and Tagger of a fakeRegistry: every tag points at the digest of its
// name unless written by Tag; payload images list the components in refs.
type payloads struct {
	f        *fakeRegistry
	mu       sync.Mutex
	digests  map[string]string   // tag -> digest, for tags written by Tag
	refs     map[string][]string // payload digest -> component names
	failOnce map[string]bool     // Tag of these fails once, as a rate limit that outlasted retries
}

func (p *payloads) Digest(_ context.Context, repo, tag string) (string, error) {
	p.f.mu.Lock()
	_, ok := slices.BinarySearch(p.f.tags, tag)
	p.f.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%s: %w", tag, registry.ErrNotFound)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.digests[tag]; ok {
		return d, nil
	}
	return digestOf(tag), nil
}

func (p *payloads) Tag(_ context.Context, repo, tag, digest string) error {
	p.mu.Lock()
	if p.failOnce[tag] {
		delete(p.failOnce, tag)
		p.mu.Unlock()
		return fmt.Errorf("tag %s: %w", tag, registry.ErrRateLimited)
	}
	p.digests[tag] = digest
	p.mu.Unlock()
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if i, ok := slices.BinarySearch(p.f.tags, tag); !ok {
		p.f.tags = slices.Insert(p.f.tags, i, tag)
	}
	return nil
}

func (p *payloads) ImageReferences(_ context.Context, repo, ref string) ([][]byte, error) {
	p.mu.Lock()
	names, ok := p.refs[ref]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", ref, registry.ErrNoImageReferences)
	}
	var tags []string
	for _, n := range names {
		tags = append(tags, fmt.Sprintf(`{"name":%q,"from":{"kind":"DockerImage","name":"quay.io/ci/x@%s"}}`, n, digestOf("img "+n)))
	}
	return [][]byte{fmt.Appendf(nil, `{"kind":"ImageStream","spec":{"tags":[%s]}}`, strings.Join(tags, ","))}, nil
}

// TestPreservationShards runs a family shard end to end: it publishes one preserve shard per
// unpreserved payload (one preserved at once, one after a transient failure, one that cannot
// be preserved and is reported), carries out a removal request and an orphan removal, audits
// every delete, never touches another tag, and records the results.
func TestPreservationShards(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	f := newFake([]string{
		"20200101000000_prune_a", "latest",
		preserve.PayloadTag("ok"), preserve.PayloadTag("flaky"), preserve.PayloadTag("broken"),
		preserve.PayloadTag("old"), preserve.MarkerTag("old"), preserve.ComponentTag("old", "cli"), preserve.RemovalTag("old"),
		preserve.MarkerTag("gone"), preserve.ComponentTag("gone", "cli"),
		preserve.PayloadTag("kept"), preserve.MarkerTag("kept"), preserve.ComponentTag("kept", "cli"),
	})
	p := &payloads{f: f, digests: map[string]string{}, failOnce: map[string]bool{preserve.ComponentTag("flaky", "tests"): true},
		refs: map[string][]string{
			digestOf(preserve.PayloadTag("ok")):    {"cli", "installer"},
			digestOf(preserve.PayloadTag("flaky")): {"cli", "tests"},
		}}
	for _, n := range []string{"cli", "installer", "tests"} { // the component images exist
		p.digests["img-"+n] = digestOf("img " + n)
		f.tags = append(f.tags, "img-"+n)
	}
	sort.Strings(f.tags)
	const runID = "pres"
	c := testCtx(t)
	if _, err := e.l.CreateRun(c, proto.RunRecord{RunID: runID, Registry: "quay.io", Repositories: []string{"ci/x"},
		Policy: testPolicy(), State: proto.RunRunning, StartedAt: time.Now().UTC(), Shards: 1,
		Preservation: proto.PreserveSettings{Enabled: true, Aliases: []string{"proxy.example/ci/x=ci/x"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.CreateShard(c, proto.ShardRecord{RunID: runID, ShardID: "0-family", Kind: proto.KindFamily,
		Repository: "ci/x", Range: preserve.Span()}); err != nil {
		t.Fatal(err)
	}
	before, _ := f.snapshot()
	var gotAliases atomic.Pointer[[]preserve.Alias] // what the worker read from the run's record

	cfg := worker.Config{RetryDelay: 50 * time.Millisecond, PageSize: 3,
		Preserver: func(_ context.Context, run proto.RunRecord, aliases []preserve.Alias) (*preserve.Preserver, error) {
			gotAliases.Store(&aliases)
			return preserve.New(preserve.Config{Registry: "quay.io"}, p, p, nil)
		}}
	e.startWorkers(t, 2, cfg, f, nil)
	shards := e.waitShards(t, runID, 4)
	if want, _ := preserve.ParseAlias("proxy.example/ci/x=ci/x"); gotAliases.Load() == nil || !reflect.DeepEqual(*gotAliases.Load(), []preserve.Alias{want}) {
		t.Errorf("the Preserver was built with aliases %v, want the run record's %v", gotAliases.Load(), want)
	}

	kinds := map[proto.ShardKind]int{}
	for _, s := range shards {
		kinds[s.Kind]++
		if s.State != proto.StateDone {
			t.Errorf("shard %s (%s) ended %s: %s", s.ShardID, s.Kind, s.State, s.LastError)
		}
		if s.Counters != (proto.Counters{}) {
			t.Errorf("shard %s has prune counters %+v", s.ShardID, s.Counters)
		}
	}
	if kinds[proto.KindFamily] != 1 || kinds[proto.KindPreserve] != 3 {
		t.Errorf("shards by kind = %v, want 1 family and 3 preserve", kinds)
	}

	remaining, deleted := f.snapshot()
	wantDeleted := []string{preserve.ComponentTag("gone", "cli"), preserve.ComponentTag("old", "cli"), preserve.MarkerTag("gone"),
		preserve.MarkerTag("old"), preserve.PayloadTag("old"), preserve.RemovalTag("old")}
	slices.Sort(wantDeleted)
	if !slices.Equal(deleted, wantDeleted) {
		t.Errorf("deleted %v, want %v", deleted, wantDeleted)
	}
	for _, tag := range before {
		if !preserve.Protected(tag) && !slices.Contains(remaining, tag) {
			t.Errorf("%s is gone", tag)
		}
	}
	for _, tag := range []string{preserve.ComponentTag("ok", "cli"), preserve.ComponentTag("ok", "installer"), preserve.MarkerTag("ok"),
		preserve.ComponentTag("flaky", "cli"), preserve.ComponentTag("flaky", "tests"), preserve.MarkerTag("flaky"), preserve.MarkerTag("kept")} {
		if !slices.Contains(remaining, tag) {
			t.Errorf("%s was not written", tag)
		}
	}
	if slices.Contains(remaining, preserve.MarkerTag("broken")) {
		t.Error("the payload without image-references was marked preserved")
	}

	var total proto.PreserveCounters
	var failures []string
	results, err := e.l.PreserveResults(c, runID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		total.Add(r.Counters)
		failures = append(failures, r.Failures...)
	}
	// flaky's retry finds the component tag its first attempt wrote and writes only the other:
	// 2 (ok) + 1 (flaky's last attempt), the result of a redelivered shard replacing the first.
	want := proto.PreserveCounters{FamilyTags: 12, NeedingPreservation: 3, Preserved: 2, PreserveFailed: 1, ComponentsTagged: 3,
		RemovalRequests: 1, RemovalTargeted: 4, RemovalRemoved: 4, Orphans: 2, OrphansRemoved: 2}
	if total != want {
		t.Errorf("results = %+v\nwant %+v", total, want)
	}
	if len(failures) != 1 || !strings.HasPrefix(failures[0], "broken: ") {
		t.Errorf("failures = %q, want the broken payload's", failures)
	}

	var audited []string
	for ev, err := range e.l.Audit(c, runID) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Outcome != proto.OutcomeDeleted {
			t.Errorf("audit event %+v", ev)
		}
		audited = append(audited, ev.Tag)
	}
	slices.Sort(audited)
	if !slices.Equal(audited, wantDeleted) {
		t.Errorf("audited %v, want %v", audited, wantDeleted)
	}
}
