package main

import (
	"context"
	"errors"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
)

// meteredClient counts what a worker's registry client lists and deletes, for the
// tagsweep_tags_* metrics the alerts watch (the worker package does not report metrics
// itself; if it comes to, this adapter goes). Listed tags count as scanned, so a page's
// tags past its shard's end are counted too: the rate is what the alerts need.
type meteredClient struct {
	registry.Client
	m *telemetry.Metrics
}

func (c meteredClient) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	p, err := c.Client.List(ctx, repo, last, n)
	if err == nil {
		c.m.AddScanned(len(p.Tags))
	}
	return p, err
}

func (c meteredClient) Delete(ctx context.Context, repo, tag string) error {
	err := c.Client.Delete(ctx, repo, tag)
	switch {
	case err == nil:
		c.m.AddDeleted(1)
	case errors.Is(err, registry.ErrNotFound):
		c.m.AddAlreadyGone(1)
	case errors.Is(err, registry.ErrRateLimited):
		c.m.AddFailed(telemetry.FailedRateLimited, 1)
	default:
		c.m.AddFailed(telemetry.FailReasonOf(err), 1)
	}
	return err
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
