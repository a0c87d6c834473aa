package main

import (
	"errors"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
	"github.com/tagsweep/tagsweep/worker"
)

// newMetrics is a process's metrics: its build, its workers' slots, and the run gauges when
// it runs a coordinator.
func newMetrics(coordinator bool, slots int) *telemetry.Metrics {
	m := telemetry.New()
	b := build(version)
	m.SetBuild(b.Version, b.Commit)
	m.SetSlots(slots)
	if coordinator {
		m.ExportRun()
	}
	return m
}

// workerMetrics records what a worker does (worker.Observer) in the metrics: tags scanned,
// kept by reason, deleted, already gone and failed by reason, and shards in flight. Its
// counts are the ones the shard records get, so a run's tagsweep_tags_* increases add up
// to its report.
type workerMetrics struct{ m *telemetry.Metrics }

// StartShard implements worker.Observer.
func (o workerMetrics) StartShard(_, _ string) func() { return o.m.StartShard() }

// PageDone implements worker.Observer.
func (o workerMetrics) PageDone(s worker.PageStats) {
	o.m.AddScanned(s.Scanned)
	o.m.AddDeleted(s.Deleted)
	o.m.AddAlreadyGone(s.AlreadyGone)
	o.m.AddKept(telemetry.KeptDryRun, s.DryRun)
	for r, n := range s.Kept {
		o.m.AddKept(keepReason(r), n)
	}
	for _, err := range s.Failed {
		o.m.AddFailed(failReason(err), 1)
	}
}

// keepReason is the metrics' name of the policy's reason for keeping a tag.
func keepReason(r policy.Reason) telemetry.KeepReason {
	switch r {
	case policy.ReasonNoPrunePattern:
		return telemetry.KeptNotPrune
	case policy.ReasonNotOldEnough:
		return telemetry.KeptTooNew
	case policy.ReasonKeepPattern:
		return telemetry.KeptKeepRule
	case policy.ReasonPreservationFamily:
		return telemetry.KeptPreserved
	case policy.ReasonInvalidTimestamp:
		return telemetry.KeptInvalidTime
	}
	return telemetry.KeptOther
}

// failReason classifies a failed delete's error for the metrics.
func failReason(err error) telemetry.FailReason {
	if errors.Is(err, registry.ErrRateLimited) {
		return telemetry.FailedRateLimited
	}
	return telemetry.FailReasonOf(err)
}

// runGauges publishes the coordinator's view of its run in the run gauges the alerts read.
type runGauges struct{ m *telemetry.Metrics }

// RunStatus implements coordinator.Observer.
func (g runGauges) RunStatus(s coordinator.Status) {
	r := s.Report
	g.m.SetRun(telemetry.RunStatus{
		Pending:      s.Pending,
		Running:      s.Running,
		Done:         r.Shards.Done,
		Failed:       r.Shards.Failed,
		RunFailed:    r.Shards.Failed > 0 || r.Reason != "",
		LastProgress: s.LastProgress,
	})
}
