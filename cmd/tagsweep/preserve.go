package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Release-payload preservation and --delete-api quay-v1: the clients a worker needs beyond
// the OCI one.

// payloadConcurrency bounds a worker's payload reads and tag writes per run's client.
const payloadConcurrency = 8

// quayClient is the Quay API v1 client for host. Quay's nginx counts /api/ apart from /v2/,
// so it gets its own rate control, shared by the process's API v1 clients of host.
func (r *registries) quayClient(cfg config.Config, host string, plainHTTP bool, log *slog.Logger) (*registry.Quay, error) {
	r.mu.Lock()
	key := host + " api/v1"
	rc, ok := r.controls[key]
	if !ok {
		rc = registry.NewRateControl(registry.RateControlConfig{})
		r.controls[key] = rc
	}
	r.mu.Unlock()
	return registry.NewQuay(registry.QuayConfig{
		Host: host, PlainHTTP: plainHTTP, Token: cfg.Token.Reveal(), RateControl: rc,
		Concurrency: max(cfg.DeleteConc, 2), WrapTransport: r.m.Transport, Logger: log,
	})
}

// quayDeletes is a registry client that lists and checks tags (and reads their digests)
// through the registry API and deletes through Quay's API v1 (--delete-api quay-v1).
type quayDeletes struct {
	*registry.OCI
	quay *registry.Quay
}

func (q quayDeletes) Delete(ctx context.Context, repo, tag string) error {
	return q.quay.Delete(ctx, repo, tag)
}

// preserver returns the worker's Preserver factory: payloads are read through the registry
// API with the docker config's credentials; component tags and markers are written by copying
// the manifest (v2) or, with --delete-api quay-v1, through API v1 as the existing pruner did.
func preserver(cfg config.Config, regs *registries, log *slog.Logger) func(context.Context, proto.RunRecord, []preserve.Alias) (*preserve.Preserver, error) {
	return func(_ context.Context, run proto.RunRecord, aliases []preserve.Alias) (*preserve.Preserver, error) {
		if err := allowed(cfg, run); err != nil {
			return nil, err
		}
		clog := log.With("repo_registry", run.Registry)
		reader, err := registry.NewPayload(registry.PayloadConfig{
			OCIConfig: regs.config(cfg, run.Registry, run.PlainHTTP, payloadConcurrency, clog)})
		if err != nil {
			return nil, err
		}
		var tagger preserve.Tagger = reader
		if cfg.DeleteAPI == config.DeleteAPIQuayV1 {
			if tagger, err = regs.quayClient(cfg, run.Registry, run.PlainHTTP, clog); err != nil {
				return nil, err
			}
		}
		return preserve.New(preserve.Config{Registry: run.Registry, Aliases: aliases}, reader, tagger, log)
	}
}

// runReport is the JSON report: the tagsweep that wrote it and the run's report.
type runReport struct {
	Tagsweep buildInfo `json:"tagsweep"`
	proto.Report
}

// printPreservation prints the existing pruner's five preservation summary lines, in its
// order and words (so that whoever reads its logs finds them), then tagsweep's own.
func printPreservation(w io.Writer, dryRun bool, p proto.PreserveCounters, failures []string) {
	fmt.Fprintf(w, "Release payloads needing preservation: %d\n", p.NeedingPreservation)
	if dryRun {
		fmt.Fprintf(w, "Release payloads that would be preserved: %d\n", p.Preserved)
	} else {
		fmt.Fprintf(w, "Release payloads preserved: %d\n", p.Preserved)
	}
	fmt.Fprintf(w, "Removal requests processed: %d\n", p.RemovalRequests)
	fmt.Fprintf(w, "Release payload tags targeted for removal: %d\n", p.RemovalTargeted)
	if !dryRun {
		fmt.Fprintf(w, "Release payload tags successfully removed: %d\n", p.RemovalRemoved)
	}
	fmt.Fprintf(w, "Release payloads that could not be preserved: %d\n", p.PreserveFailed)
	if !dryRun {
		fmt.Fprintf(w, "Release payload tags that failed to remove: %d\n", p.RemovalFailed)
	}
	fmt.Fprintf(w, "Orphaned release payload tags: %d", p.Orphans)
	if !dryRun {
		fmt.Fprintf(w, " (%d removed)", p.OrphansRemoved)
	}
	fmt.Fprintln(w)
	if len(failures) > 0 {
		fmt.Fprintf(w, "Preservation failures: %s\n", strings.Join(failures, "; "))
	}
}
