// Package telemetry holds tagsweep's Prometheus metrics and the small HTTP server that exposes
// them next to the liveness and readiness probes Kubernetes calls.
//
// Every Metrics value has its own prometheus.Registry: nothing is registered on the global
// default registry, so tests and the single-process `tagsweep run` (coordinator and workers in
// one process) can create as many as they like.
//
// Label values come from fixed vocabularies (the KeepReason, FailReason and op constants
// below): a value outside them is counted as "other", so a bug cannot blow up the series count.
package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names. The alerts in deploy/monitoring and the docs refer to these; deploy's tests
// check that every name an alert uses is registered here.
const (
	MetricTagsScanned     = "tagsweep_tags_scanned_total"
	MetricTagsDeleted     = "tagsweep_tags_deleted_total"
	MetricTagsKept        = "tagsweep_tags_kept_total"
	MetricTagsFailed      = "tagsweep_tags_failed_total"
	MetricRequests        = "tagsweep_registry_requests_total"
	MetricRequestDuration = "tagsweep_registry_request_duration_seconds"
	MetricRateLimited     = "tagsweep_registry_rate_limited_total"
	MetricRequestRate     = "tagsweep_registry_request_rate"
	MetricShardsInFlight  = "tagsweep_shards_in_flight"
	MetricSlots           = "tagsweep_worker_slots"
	MetricBuildInfo       = "tagsweep_build_info"
	MetricRunFailed       = "tagsweep_run_failed"
	MetricRunShards       = "tagsweep_run_shards"
	MetricRunLastProgress = "tagsweep_run_last_progress_timestamp_seconds"
)

// Label names and fixed label values.
const (
	labelReason = "reason"
	labelOp     = "op"
	labelCode   = "code"
	labelResult = "result"
	labelState  = "state"

	labelVersion   = "version"
	labelRevision  = "revision"
	labelGoVersion = "goversion"

	resultDeleted      = "deleted"
	resultAlreadyGone  = "already_gone"
	codeTransportError = "error" // no HTTP response at all
	otherLabel         = "other"
)

// KeepReason says why a listed tag was not deleted.
type KeepReason string

// The kept-tag vocabulary.
const (
	KeptNotPrune    KeepReason = "not_prune"    // the name does not match the prune pattern
	KeptTooNew      KeepReason = "too_new"      // dated at or after the run's cutoff
	KeptKeepRule    KeepReason = "keep_rule"    // a keep pattern matched
	KeptPreserved   KeepReason = "preserved"    // a release-payload preservation family tag
	KeptInvalidTime KeepReason = "invalid_time" // prune pattern, but the timestamp is not a real time
	KeptDryRun      KeepReason = "dry_run"      // eligible, but the run is a dry run
	KeptDeleteCap   KeepReason = "delete_cap"   // eligible, but the run hit --max-deletes
	KeptOther       KeepReason = otherLabel
)

// KeepReasons is the whole kept-tag vocabulary, in a stable order.
var KeepReasons = []KeepReason{KeptNotPrune, KeptTooNew, KeptKeepRule, KeptPreserved, KeptInvalidTime, KeptDryRun, KeptDeleteCap, KeptOther}

// FailReason says why a delete failed (after the registry client's own retries).
type FailReason string

// The failed-delete vocabulary.
const (
	FailedRateLimited FailReason = "rate_limited" // 429 after retries
	FailedTimeout     FailReason = "timeout"      // the request's deadline passed
	FailedCanceled    FailReason = "canceled"     // the worker was stopping
	FailedOther       FailReason = otherLabel
)

// FailReasons is the whole failed-delete vocabulary, in a stable order.
var FailReasons = []FailReason{FailedRateLimited, FailedTimeout, FailedCanceled, FailedOther}

// FailReasonOf classifies a delete error by what the standard library can tell: a passed
// deadline or network timeout is FailedTimeout, a cancelled context FailedCanceled, anything
// else FailedOther. Rate limiting is the caller's to recognise (errors.Is(err,
// registry.ErrRateLimited) -> FailedRateLimited): telemetry does not import the registry
// clients, so that they can be instrumented through Transport without an import cycle.
// Don't call it for a nil error or for "already gone", which are successes.
func FailReasonOf(err error) FailReason {
	var nerr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return FailedCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return FailedTimeout
	default:
		return FailedOther
	}
}

// Run-state values of the tagsweep_run_shards gauge's state label.
var shardStates = []string{"pending", "running", "done", "failed"}

// Metrics is the set of tagsweep's metrics on its own registry. Its methods are safe for
// concurrent use. A nil *Metrics is valid and records nothing, so components can take one
// optionally.
type Metrics struct {
	reg *prometheus.Registry

	scanned     prometheus.Counter
	deleted     *prometheus.CounterVec
	kept        *prometheus.CounterVec
	failed      *prometheus.CounterVec
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	rateLimited *prometheus.CounterVec
	rate        prometheus.Gauge
	inFlight    prometheus.Gauge
	slots       prometheus.Gauge
	build       *prometheus.GaugeVec

	// The run gauges are the coordinator's alone (ExportRun): a worker does not track a run,
	// and would only export zeros that a sum over pods mixes with the coordinator's figures.
	runOnce   sync.Once
	runFailed prometheus.Gauge
	runShards *prometheus.GaugeVec
	progress  prometheus.Gauge
}

// New returns tagsweep's metrics registered on a fresh registry, together with the Go runtime
// and process collectors. Every labelled series of a fixed vocabulary starts at zero, so
// rate() and increase() see the first event and alerts can tell "zero" from "absent".
func New() *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		scanned: counter(MetricTagsScanned, "Tags listed inside the shards this process worked on."),
		deleted: counterVec(MetricTagsDeleted,
			"Tags deleted; result=already_gone when the registry answered 404 (someone else deleted it first).", labelResult),
		kept:   counterVec(MetricTagsKept, "Listed tags that were not deleted, by reason.", labelReason),
		failed: counterVec(MetricTagsFailed, "Eligible tags whose delete failed after retries, by reason.", labelReason),
		requests: counterVec(MetricRequests,
			"HTTP requests sent to registries, by operation and status code (code=error: no response).", labelOp, labelCode),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricRequestDuration,
			Help:    "Time from sending a registry request to its response headers, by operation.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{labelOp}),
		rateLimited: counterVec(MetricRateLimited, "Registry answers with status 429 Too Many Requests, by operation.", labelOp),
		rate: gauge(MetricRequestRate,
			"Requests per second this process currently allows itself against the registry (0 = unlimited)."),
		inFlight: gauge(MetricShardsInFlight, "Shards this process is working on now."),
		slots: gauge(MetricSlots,
			"Shards this process's workers can work on at once (--slots per worker); 0 in a coordinator."),
		build: gaugeVec(MetricBuildInfo, "Always 1; its labels say which tagsweep this is.",
			labelVersion, labelRevision, labelGoVersion),
		runFailed: gauge(MetricRunFailed,
			"1 when the run this coordinator tracks has failed (a shard failed, or the delete cap stopped it), else 0."),
		runShards: gaugeVec(MetricRunShards, "Shards of the run this coordinator tracks, by state.", labelState),
		progress: gauge(MetricRunLastProgress,
			"Unix time of the newest checkpoint of any shard of the tracked run (0 = none yet)."),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.scanned, m.deleted, m.kept, m.failed, m.requests, m.duration, m.rateLimited,
		m.rate, m.inFlight, m.slots, m.build,
	)
	for _, r := range []string{resultDeleted, resultAlreadyGone} {
		m.deleted.WithLabelValues(r)
	}
	for _, r := range KeepReasons {
		m.kept.WithLabelValues(string(r))
	}
	for _, r := range FailReasons {
		m.failed.WithLabelValues(string(r))
	}
	for _, op := range Ops {
		m.rateLimited.WithLabelValues(op)
	}
	return m
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

// ExportRun adds the run gauges (tagsweep_run_*) to the metrics, for a process that runs a
// coordinator: SetRun publishes to them. Calling it again has no further effect.
func (m *Metrics) ExportRun() {
	if m == nil {
		return
	}
	m.runOnce.Do(func() {
		m.reg.MustRegister(m.runFailed, m.runShards, m.progress)
		for _, s := range shardStates {
			m.runShards.WithLabelValues(s)
		}
	})
}

// SetBuild publishes tagsweep_build_info with this binary's version and revision (the
// commit, "" when not known).
func (m *Metrics) SetBuild(version, revision string) {
	if m == nil {
		return
	}
	m.build.Reset()
	m.build.WithLabelValues(version, revision, runtime.Version()).Set(1)
}

// SetSlots records how many shards this process's workers take at once.
func (m *Metrics) SetSlots(n int) {
	if m == nil {
		return
	}
	m.slots.Set(float64(n))
}

// Registry is the registry the metrics live on, for callers that add collectors of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// AddScanned counts n listed tags.
func (m *Metrics) AddScanned(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.scanned.Add(float64(n))
}

// AddDeleted counts n successful deletes.
func (m *Metrics) AddDeleted(n int) { m.addDeleted(resultDeleted, n) }

// AddAlreadyGone counts n deletes the registry answered with 404: the tag was already gone.
func (m *Metrics) AddAlreadyGone(n int) { m.addDeleted(resultAlreadyGone, n) }

func (m *Metrics) addDeleted(result string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.deleted.WithLabelValues(result).Add(float64(n))
}

// AddKept counts n listed tags kept for reason. A reason outside KeepReasons counts as other.
func (m *Metrics) AddKept(reason KeepReason, n int) {
	if m == nil || n <= 0 {
		return
	}
	if !slices.Contains(KeepReasons, reason) {
		reason = KeptOther
	}
	m.kept.WithLabelValues(string(reason)).Add(float64(n))
}

// AddFailed counts n failed deletes for reason. A reason outside FailReasons counts as other.
func (m *Metrics) AddFailed(reason FailReason, n int) {
	if m == nil || n <= 0 {
		return
	}
	if !slices.Contains(FailReasons, reason) {
		reason = FailedOther
	}
	m.failed.WithLabelValues(string(reason)).Add(float64(n))
}

// SetRequestRate records the request rate (per second) the client's limiter allows now;
// 0 means unlimited.
func (m *Metrics) SetRequestRate(perSecond float64) {
	if m == nil {
		return
	}
	m.rate.Set(perSecond)
}

// StartShard counts a shard as in flight until the returned function is called. Calling the
// function more than once has no further effect.
func (m *Metrics) StartShard() (end func()) {
	if m == nil {
		return func() {}
	}
	m.inFlight.Inc()
	var once sync.Once
	return func() { once.Do(m.inFlight.Dec) }
}

// RunStatus is the state of a run as the coordinator sees it in the shard records.
type RunStatus struct {
	Pending, Running, Done, Failed int
	// RunFailed is true once the run has failed (a shard failed, or the delete cap stopped it).
	RunFailed bool
	// LastProgress is the newest checkpoint or heartbeat of any shard; zero = none yet.
	LastProgress time.Time
}

// SetRun publishes the tracked run's state for the alerts. It calls ExportRun.
func (m *Metrics) SetRun(s RunStatus) {
	if m == nil {
		return
	}
	m.ExportRun()
	for i, n := range []int{s.Pending, s.Running, s.Done, s.Failed} {
		m.runShards.WithLabelValues(shardStates[i]).Set(float64(n))
	}
	failed := 0.0
	if s.RunFailed {
		failed = 1
	}
	m.runFailed.Set(failed)
	progress := 0.0
	if !s.LastProgress.IsZero() {
		progress = float64(s.LastProgress.UnixNano()) / 1e9
	}
	m.progress.Set(progress)
}
