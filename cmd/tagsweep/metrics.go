package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/proto"
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

// runGauges feeds a coordinator's (partial) reports to the run gauges. A report does not
// tell pending from running shards: every unfinished shard counts as running, which is
// what the alerts sum. The last progress is when the scanned count last grew.
type runGauges struct {
	m            *telemetry.Metrics
	mu           sync.Mutex
	scanned      int64
	lastProgress time.Time
}

func (g *runGauges) set(r proto.Report, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Tags.Scanned > g.scanned || (g.lastProgress.IsZero() && r.Tags.Scanned > 0) {
		g.scanned, g.lastProgress = r.Tags.Scanned, now
	}
	g.m.SetRun(telemetry.RunStatus{
		Running:      r.Shards.Total - r.Shards.Done - r.Shards.Failed,
		Done:         r.Shards.Done,
		Failed:       r.Shards.Failed,
		RunFailed:    r.Shards.Failed > 0 || r.Reason != "",
		LastProgress: g.lastProgress,
	})
}
