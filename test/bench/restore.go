package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/restore"
)

// childRestore runs the restore side: a run with --record-digests (not what is timed), then a
// restore of every tag it deleted, confirmed, timed on its own. With -restore-quay the run
// records no digests and the restore finds each tag's digest in Quay's tag history (API v1)
// and restores it through Quay's time machine. The restore's requests are counted as its
// registry clients send them (retries included), so that the run's requests, which the sim
// counts too, stay out of the restore's rate.
func childRestore(ctx context.Context, c childFlags, res *sideResult) error {
	_, p, err := c.rules()
	if err != nil {
		return err
	}
	p.RecordDigests = !c.restoreQuay
	rig, err := testrig.Start(ctx, testrig.Config{})
	if err != nil {
		return err
	}
	defer rig.Close()
	out, err := runStack(ctx, rig, stackConfig{
		Registry: c.registry, Repo: c.repo, Policy: p, Workers: c.workers, Slots: c.slots,
		DeleteConc: c.deleteConc, SplitAfter: c.splitAfter, Log: c.logger(),
	})
	t := out.Report.Tags
	res.Scanned, res.Eligible, res.Deleted, res.AlreadyGone, res.DeleteFailed = t.Scanned, t.Eligible, t.Deleted, t.AlreadyGone, t.DeleteFailed
	res.Shards = len(out.Shards)
	if err != nil {
		return fmt.Errorf("the run before the restore: %w", err)
	}
	var sent atomic.Int64
	count := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			sent.Add(1)
			return rt.RoundTrip(req)
		})
	}
	cfg := restore.Config{RunID: out.Report.RunID, ID: out.Report.RunID + "-restore", Confirm: true, Concurrency: c.restoreConc}
	if c.restoreQuay {
		cfg.History, err = registry.NewQuay(registry.QuayConfig{Host: c.registry, PlainHTTP: true, Token: benchAPIToken,
			Concurrency: c.restoreConc, Logger: c.logger(), WrapTransport: count})
	} else {
		cfg.Manifests, err = registry.NewRestorer(registry.OCIConfig{Host: c.registry, PlainHTTP: true, Concurrency: c.restoreConc,
			Logger: c.logger(), WrapTransport: count})
	}
	if err != nil {
		return err
	}
	rs, err := restore.New(cfg, rig.Ledger(), c.logger())
	if err != nil {
		return err
	}
	start := time.Now()
	rep, err := rs.Run(ctx)
	res.RestoreSeconds = time.Since(start).Seconds()
	res.RestoreRequests = sent.Load()
	res.Restored, res.RestoreFailed, res.RestoreSkipped = rep.Tags.Restored, rep.Tags.Failed, rep.Tags.Skipped
	for _, f := range rep.Failures[:min(3, len(rep.Failures))] {
		fmt.Fprintln(os.Stderr, "restore failure:", f)
	}
	return err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
