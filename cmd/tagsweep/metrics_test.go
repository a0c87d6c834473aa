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
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
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

// fakeClient answers List with n tags and Delete with the error named by the tag.
type fakeClient struct{ errs map[string]error }

func (f fakeClient) List(_ context.Context, _, _ string, n int) (registry.Page, error) {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%03d", i)
	}
	return registry.Page{Tags: tags}, nil
}

func (f fakeClient) Delete(_ context.Context, _, tag string) error { return f.errs[tag] }

func TestMeteredClient(t *testing.T) {
	m := telemetry.New()
	c := meteredClient{Client: fakeClient{errs: map[string]error{
		"gone":    fmt.Errorf("delete: %w", registry.ErrNotFound),
		"limited": fmt.Errorf("delete: %w", registry.ErrRateLimited),
		"slow":    context.DeadlineExceeded,
		"broken":  errors.New("500"),
	}}, m: m}
	if _, err := c.List(t.Context(), "r", "", 7); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"ok1", "ok2", "gone", "limited", "slow", "broken"} {
		_ = c.Delete(t.Context(), "r", tag)
	}
	body := metricsBody(t, m)
	for series, want := range map[string]float64{
		telemetry.MetricTagsScanned:                             7,
		telemetry.MetricTagsDeleted + `{result="deleted"}`:      2,
		telemetry.MetricTagsDeleted + `{result="already_gone"}`: 1,
		telemetry.MetricTagsFailed + `{reason="rate_limited"}`:  1,
		telemetry.MetricTagsFailed + `{reason="timeout"}`:       1,
		telemetry.MetricTagsFailed + `{reason="other"}`:         1,
	} {
		if got := scrape(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
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
