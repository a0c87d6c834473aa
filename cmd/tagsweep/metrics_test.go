package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
	"github.com/tagsweep/tagsweep/worker"
)

// scrape returns the value of the metric sample named exactly by series (name with its
// labels, as exposed), or -1 when absent.
func scrape(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("sample %s: %v", series, err)
	}
	return v
}

func metricsBody(t *testing.T, m *telemetry.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestWorkerMetrics(t *testing.T) {
	m := telemetry.New()
	o := workerMetrics{m: m}
	end := o.StartShard("r1", "s1")
	o.StartShard("r1", "s2")()
	o.PageDone(worker.PageStats{Scanned: 20, DryRun: 3, Deleted: 2, AlreadyGone: 1,
		Kept: map[policy.Reason]int{policy.ReasonNoPrunePattern: 4, policy.ReasonNotOldEnough: 2, policy.ReasonKeepPattern: 1,
			policy.ReasonPreservationFamily: 1, policy.ReasonInvalidTimestamp: 1, "made-up": 1},
		Failed: []error{
			fmt.Errorf("delete: %w", registry.ErrRateLimited),
			fmt.Errorf("delete: %w", &registry.RetryAfterError{After: time.Second, Err: registry.ErrRateLimited}),
			context.DeadlineExceeded,
			errors.New("http 500"),
		}})
	body := metricsBody(t, m)
	for series, want := range map[string]float64{
		telemetry.MetricTagsScanned:                             20,
		telemetry.MetricTagsDeleted + `{result="deleted"}`:      2,
		telemetry.MetricTagsDeleted + `{result="already_gone"}`: 1,
		telemetry.MetricTagsKept + `{reason="dry_run"}`:         3,
		telemetry.MetricTagsKept + `{reason="not_prune"}`:       4,
		telemetry.MetricTagsKept + `{reason="too_new"}`:         2,
		telemetry.MetricTagsKept + `{reason="keep_rule"}`:       1,
		telemetry.MetricTagsKept + `{reason="preserved"}`:       1,
		telemetry.MetricTagsKept + `{reason="invalid_time"}`:    1,
		telemetry.MetricTagsKept + `{reason="other"}`:           1,
		telemetry.MetricTagsFailed + `{reason="rate_limited"}`:  2,
		telemetry.MetricTagsFailed + `{reason="timeout"}`:       1,
		telemetry.MetricTagsFailed + `{reason="other"}`:         1,
		telemetry.MetricShardsInFlight:                          1,
	} {
		if got := scrape(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	end()
	if got := scrape(t, metricsBody(t, m), telemetry.MetricShardsInFlight); got != 0 {
		t.Errorf("%s after every shard ended = %v, want 0", telemetry.MetricShardsInFlight, got)
	}
}

func TestRunGauges(t *testing.T) {
	m := telemetry.New()
	last := time.Unix(1_800_000_000, 0)
	runGauges{m: m}.RunStatus(coordinator.Status{
		Report:  proto.Report{Shards: proto.ShardTotals{Total: 10, Done: 4, Failed: 1}},
		Pending: 2, Running: 3, LastProgress: last,
	})
	body := metricsBody(t, m)
	for series, want := range map[string]float64{
		telemetry.MetricRunShards + `{state="pending"}`: 2,
		telemetry.MetricRunShards + `{state="running"}`: 3,
		telemetry.MetricRunShards + `{state="done"}`:    4,
		telemetry.MetricRunShards + `{state="failed"}`:  1,
		telemetry.MetricRunFailed:                       1,
		telemetry.MetricRunLastProgress:                 float64(last.Unix()),
	} {
		if got := scrape(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestProcessMetrics: every process says which tagsweep it is; a worker exports its slots
// and not the coordinator's run gauges, which would be zeros mixed into the coordinator's.
func TestProcessMetrics(t *testing.T) {
	tests := []struct {
		name        string
		coordinator bool
		slots       float64
	}{
		{"worker", false, 4},
		{"coordinator", true, 0},
		{"run", true, 8},
	}
	for _, tc := range tests {
		m := newMetrics(tc.coordinator, int(tc.slots))
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, s := range mf.GetMetric() {
				got[mf.GetName()] += s.GetGauge().GetValue()
			}
		}
		if got[telemetry.MetricBuildInfo] != 1 || got[telemetry.MetricSlots] != tc.slots {
			t.Errorf("%s: build_info, slots = %v, %v; want 1, %v", tc.name, got[telemetry.MetricBuildInfo], got[telemetry.MetricSlots], tc.slots)
		}
		if _, has := got[telemetry.MetricRunShards]; has != tc.coordinator {
			t.Errorf("%s exports %s: %v, want %v", tc.name, telemetry.MetricRunShards, has, tc.coordinator)
		}
	}
}
