package telemetry

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewLintsClean(t *testing.T) {
	m := New()
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

func gathered(t *testing.T, m *Metrics) map[string]bool {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	return got
}

func TestNewRegistersEveryMetric(t *testing.T) {
	m := New()
	m.SetBuild("v1.2.3", "abc")
	got := gathered(t, m)
	// Unlabelled metrics and pre-initialised vectors are present from the start; the
	// request counter and histogram appear with the first request.
	for _, name := range []string{
		MetricTagsScanned, MetricTagsDeleted, MetricTagsKept, MetricTagsFailed,
		MetricRateLimited, MetricRequestRate, MetricShardsInFlight, MetricSlots, MetricBuildInfo,
		"go_goroutines", "process_start_time_seconds",
	} {
		if !got[name] {
			t.Errorf("New() registry lacks %s", name)
		}
	}
	// The run gauges are the coordinator's: a worker's metrics do not have them.
	run := []string{MetricRunFailed, MetricRunShards, MetricRunLastProgress}
	for _, name := range run {
		if got[name] {
			t.Errorf("New() registry has %s before ExportRun: a worker would export the coordinator's gauges", name)
		}
	}
	m.ExportRun()
	m.ExportRun()
	got = gathered(t, m)
	for _, name := range run {
		if !got[name] {
			t.Errorf("registry lacks %s after ExportRun", name)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	m := New()
	m.SetBuild("v1.2.3", "0123abcd")
	m.SetBuild("v1.2.4", "4567ef01") // replaces, never two series
	want := `
# HELP tagsweep_build_info Always 1; its labels say which tagsweep this is.
# TYPE tagsweep_build_info gauge
tagsweep_build_info{goversion="` + runtime.Version() + `",revision="4567ef01",version="v1.2.4"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), MetricBuildInfo); err != nil {
		t.Error(err)
	}
}

func TestTagCounters(t *testing.T) {
	m := New()
	m.AddScanned(100)
	m.AddScanned(0)
	m.AddScanned(-3)
	m.AddDeleted(7)
	m.AddAlreadyGone(2)
	m.AddKept(KeptTooNew, 80)
	m.AddKept(KeptDryRun, 1)
	m.AddKept(KeepReason("made_up"), 4) // outside the vocabulary: counted as other
	m.AddFailed(FailedRateLimited, 3)
	m.AddFailed(FailReason("teapot"), 1)

	want := `
# HELP tagsweep_tags_scanned_total Tags listed inside the shards this process worked on.
# TYPE tagsweep_tags_scanned_total counter
tagsweep_tags_scanned_total 100
# HELP tagsweep_tags_deleted_total Tags deleted; result=already_gone when the registry answered 404 (someone else deleted it first).
# TYPE tagsweep_tags_deleted_total counter
tagsweep_tags_deleted_total{result="already_gone"} 2
tagsweep_tags_deleted_total{result="deleted"} 7
# HELP tagsweep_tags_kept_total Listed tags that were not deleted, by reason.
# TYPE tagsweep_tags_kept_total counter
tagsweep_tags_kept_total{reason="delete_cap"} 0
tagsweep_tags_kept_total{reason="dry_run"} 1
tagsweep_tags_kept_total{reason="invalid_time"} 0
tagsweep_tags_kept_total{reason="keep_rule"} 0
tagsweep_tags_kept_total{reason="not_prune"} 0
tagsweep_tags_kept_total{reason="other"} 4
tagsweep_tags_kept_total{reason="preserved"} 0
tagsweep_tags_kept_total{reason="too_new"} 80
# HELP tagsweep_tags_failed_total Eligible tags whose delete failed after retries, by reason.
# TYPE tagsweep_tags_failed_total counter
tagsweep_tags_failed_total{reason="canceled"} 0
tagsweep_tags_failed_total{reason="other"} 1
tagsweep_tags_failed_total{reason="rate_limited"} 3
tagsweep_tags_failed_total{reason="timeout"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		MetricTagsScanned, MetricTagsDeleted, MetricTagsKept, MetricTagsFailed); err != nil {
		t.Error(err)
	}
}

func TestStartShard(t *testing.T) {
	m := New()
	end1 := m.StartShard()
	end2 := m.StartShard()
	if got := testutil.ToFloat64(m.inFlight); got != 2 {
		t.Fatalf("in flight after two starts = %v, want 2", got)
	}
	end1()
	end1() // a second call must not count the shard twice
	if got := testutil.ToFloat64(m.inFlight); got != 1 {
		t.Errorf("in flight after ending one shard twice = %v, want 1", got)
	}
	end2()
	if got := testutil.ToFloat64(m.inFlight); got != 0 {
		t.Errorf("in flight after ending both = %v, want 0", got)
	}
}

func TestSetRun(t *testing.T) {
	m := New()
	m.SetRequestRate(42.5)
	m.SetRun(RunStatus{Pending: 3, Running: 2, Done: 10, Failed: 1, RunFailed: true,
		LastProgress: time.Unix(1700000000, 500_000_000)})
	want := `
# HELP tagsweep_run_failed 1 when the run this coordinator tracks has failed (a shard failed, or the delete cap stopped it), else 0.
# TYPE tagsweep_run_failed gauge
tagsweep_run_failed 1
# HELP tagsweep_run_shards Shards of the run this coordinator tracks, by state.
# TYPE tagsweep_run_shards gauge
tagsweep_run_shards{state="done"} 10
tagsweep_run_shards{state="failed"} 1
tagsweep_run_shards{state="pending"} 3
tagsweep_run_shards{state="running"} 2
# HELP tagsweep_run_last_progress_timestamp_seconds Unix time of the newest checkpoint of any shard of the tracked run (0 = none yet).
# TYPE tagsweep_run_last_progress_timestamp_seconds gauge
tagsweep_run_last_progress_timestamp_seconds 1.7000000005e+09
# HELP tagsweep_registry_request_rate Requests per second this process currently allows itself against the registry (0 = unlimited).
# TYPE tagsweep_registry_request_rate gauge
tagsweep_registry_request_rate 42.5
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		MetricRunFailed, MetricRunShards, MetricRunLastProgress, MetricRequestRate); err != nil {
		t.Error(err)
	}

	// A run that recovers (next status) clears the flag; no progress yet reads as 0.
	m.SetRun(RunStatus{Pending: 1})
	if got := testutil.ToFloat64(m.runFailed); got != 0 {
		t.Errorf("%s after a healthy status = %v, want 0", MetricRunFailed, got)
	}
	if got := testutil.ToFloat64(m.progress); got != 0 {
		t.Errorf("%s with zero LastProgress = %v, want 0", MetricRunLastProgress, got)
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	// None of these may panic: components take a *Metrics optionally.
	m.AddScanned(1)
	m.AddDeleted(1)
	m.AddAlreadyGone(1)
	m.AddKept(KeptTooNew, 1)
	m.AddFailed(FailedOther, 1)
	m.SetRequestRate(1)
	m.SetRun(RunStatus{Pending: 1})
	m.StartShard()()
}

func TestMetricsAreIndependent(t *testing.T) {
	a, b := New(), New() // a second New must not panic on duplicate registration
	a.AddScanned(5)
	if got := testutil.ToFloat64(b.scanned); got != 0 {
		t.Errorf("second Metrics saw the first one's count: %v", got)
	}
}
