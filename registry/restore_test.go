package registry_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// testClock is a settable clock for the simulator.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestQuayTimeMachine: a deleted tag's history rows, newest first, name the digest it pointed
// at until each deletion; Restore puts it back there; once the window has passed the rows are
// gone and a manifest no tag keeps cannot be restored (ErrManifestGone).
func TestQuayTimeMachine(t *testing.T) {
	clk := &testClock{now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}
	s := startQuay(t, sim.Config{Now: clk.Now, TimeMachine: time.Hour})
	q := newQuay(t, s, registry.QuayConfig{}, nil)
	ctx := t.Context()
	var imgs []string
	for _, l := range []string{"a", "b", "c"} {
		d, err := s.PushImage(quayRepo, l)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, d)
	}
	tagAt := func(tag, d string) {
		t.Helper()
		if err := s.AddTags(quayRepo, d, tag); err != nil {
			t.Fatal(err)
		}
	}
	del := func(tag string) {
		t.Helper()
		if err := q.Delete(ctx, quayRepo, tag); err != nil {
			t.Fatal(err)
		}
	}
	tagAt("t1", imgs[0])
	del("t1")
	first := clk.Now()
	clk.advance(time.Minute)
	tagAt("t1", imgs[1])
	clk.advance(time.Minute)
	del("t1")
	tagAt("t3", imgs[2])
	del("t3")

	rows, err := q.History(ctx, quayRepo, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Digest != imgs[1] || rows[1].Digest != imgs[0] || !rows[1].End.Equal(first) ||
		rows[0].Alive(clk.Now()) || rows[1].Alive(clk.Now()) {
		t.Fatalf("history of t1 = %+v, want two dead rows, %s then %s (ended %s)", rows, imgs[1], imgs[0], first)
	}
	if err := q.Restore(ctx, quayRepo, "t1", imgs[0]); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.TagDigest(quayRepo, "t1"); d != imgs[0] {
		t.Errorf("t1 restored at %q, want %s", d, imgs[0])
	}
	rows, err = q.History(ctx, quayRepo, "t1")
	if err != nil || len(rows) != 3 || !rows[0].Alive(clk.Now()) {
		t.Errorf("history after the restore = %+v, %v; want the live row first", rows, err)
	}

	clk.advance(2 * time.Hour) // past the window
	if rows, err := q.History(ctx, quayRepo, "t3"); err != nil || len(rows) != 0 {
		t.Errorf("history of t3 past the window = %+v, %v; want no rows", rows, err)
	}
	if err := q.Restore(ctx, quayRepo, "t3", imgs[2]); !errors.Is(err, registry.ErrManifestGone) {
		t.Errorf("restore past the window = %v, want ErrManifestGone", err)
	}
	if _, ok := s.TagDigest(quayRepo, "t3"); ok {
		t.Error("t3 restored past the window")
	}
}

// TestRestorer: Digest reads where a tag points; Put writes a manifest by digest under a tag;
// after GC, a manifest no tag kept is ErrManifestGone while one a live tag keeps still puts.
func TestRestorer(t *testing.T) {
	s := startQuay(t, sim.Config{TimeMachine: -1})
	keep, err := s.PushImage(quayRepo, "keep")
	if err != nil {
		t.Fatal(err)
	}
	lost, err := s.PushImage(quayRepo, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddTags(quayRepo, keep, "live"); err != nil {
		t.Fatal(err)
	}
	r, err := registry.NewRestorer(registry.OCIConfig{Host: s.Addr(), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if d, err := r.Digest(ctx, quayRepo, "live"); err != nil || d != keep {
		t.Errorf("Digest(live) = %q, %v; want %s", d, err, keep)
	}
	if _, err := r.Digest(ctx, quayRepo, "absent"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Digest(absent) = %v, want ErrNotFound", err)
	}
	if err := r.Put(ctx, quayRepo, "20200101000000_prune_back", lost); err != nil {
		t.Fatalf("Put before GC: %v", err)
	}
	if d, _ := s.TagDigest(quayRepo, "20200101000000_prune_back"); d != lost {
		t.Errorf("put tag at %q, want %s", d, lost)
	}
	oci, err := registry.NewOCI(registry.OCIConfig{Host: s.Addr(), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := oci.Delete(ctx, quayRepo, "20200101000000_prune_back"); err != nil {
		t.Fatal(err)
	}
	if n := s.GC(); n == 0 {
		t.Fatal("GC collected nothing")
	}
	if err := r.Put(ctx, quayRepo, "again", lost); !errors.Is(err, registry.ErrManifestGone) {
		t.Errorf("Put of a collected manifest = %v, want ErrManifestGone", err)
	}
	if err := r.Put(ctx, quayRepo, "again", keep); err != nil {
		t.Errorf("Put of a kept manifest after GC: %v", err)
	}
	if err := r.Put(ctx, quayRepo, "sha256:abc", keep); err == nil {
		t.Error("Put to a digest reference accepted")
	}
	st := s.Stats()
	if st.TagDeletes != 1 || st.DigestDeletes != 0 {
		t.Errorf("the restorer deleted: %+v", st)
	}
}

// TestOCIDigest: Digest sends exactly one HEAD of the tag's manifest; an absent tag is
// ErrNotFound.
func TestOCIDigest(t *testing.T) {
	s := startQuay(t, sim.Config{}, "a")
	oci, err := registry.NewOCI(registry.OCIConfig{Host: s.Addr(), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := oci.Digest(t.Context(), quayRepo, "a"); err != nil || d != s.DefaultDigest() {
		t.Errorf("Digest(a) = %q, %v; want %s", d, err, s.DefaultDigest())
	}
	if _, err := oci.Digest(t.Context(), quayRepo, "b"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Digest(b) = %v, want ErrNotFound", err)
	}
	st := s.Stats()
	var others []sim.Kind
	for k, n := range st.Requests {
		if k != sim.KindManifestHead && k != sim.KindBase && n > 0 {
			others = append(others, k)
		}
	}
	if st.Requests[sim.KindManifestHead] != 2 || len(others) != 0 || st.ByStatus[sim.KindStatus{Kind: sim.KindManifestHead, Status: http.StatusNotFound}] != 1 {
		t.Errorf("requests = %v, want two HEADs and nothing else", st.Requests)
	}
}
