package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
)

// Release-payload preservation (package preserve) is planned as one family shard per
// repository, next to the prune shards; workers add a preserve shard per payload needing
// preservation. The run's settings (aliases) and each shard's outcome live in KV next to the
// records (proto.PreserveSettingsKey, proto.PreserveResultKey).

// isPrune reports whether s is a prune shard (or an inventory's list shard): only they
// partition a repository's planned range; family and preserve shards lie outside it.
func isPrune(s proto.ShardRecord) bool {
	return s.Kind == proto.KindPrune || s.Kind == proto.KindList || s.Kind == ""
}

// familyShard is repository i's family shard.
func familyShard(runID string, i int, repo string) proto.ShardRecord {
	return proto.ShardRecord{RunID: runID, ShardID: strconv.Itoa(i) + "-family", Kind: proto.KindFamily,
		Repository: repo, Range: preserve.Span()}
}

func (c *Coordinator) stateKV(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, proto.BucketState)
	if err != nil {
		return nil, fmt.Errorf("opening the state bucket: %w", err)
	}
	return kv, nil
}

// saveSettings records a new run's preservation settings; the first recorded stay.
func (c *Coordinator) saveSettings(ctx context.Context, runID string) error {
	kv, err := c.stateKV(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(proto.PreserveSettings{V: proto.Version, Enabled: c.cfg.PreservePayloads && !c.cfg.Inventory,
		Aliases: c.cfg.RepositoryAliases})
	if err != nil {
		return fmt.Errorf("encoding preservation settings: %w", err)
	}
	if _, err := kv.Create(ctx, proto.PreserveSettingsKey(runID), data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("recording preservation settings of run %s: %w", runID, err)
	}
	return nil
}

// settings reads a run's preservation settings; a run without them (recorded by a
// coordinator that did not preserve) has preservation off.
func (c *Coordinator) settings(ctx context.Context, runID string) (proto.PreserveSettings, error) {
	return preserveSettings(ctx, c.js, runID)
}

func preserveSettings(ctx context.Context, js jetstream.JetStream, runID string) (proto.PreserveSettings, error) {
	var s proto.PreserveSettings
	kv, err := js.KeyValue(ctx, proto.BucketState)
	if err != nil {
		return s, fmt.Errorf("opening the state bucket: %w", err)
	}
	e, err := kv.Get(ctx, proto.PreserveSettingsKey(runID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return s, nil
	case err != nil:
		return s, fmt.Errorf("reading preservation settings of run %s: %w", runID, err)
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return s, fmt.Errorf("decoding preservation settings of run %s: %w", runID, err)
	}
	return s, nil
}

// Preservation returns the run's release-payload preservation outcome, summed over its
// family and preserve shards, and the first failures they name. Zero when the run preserved
// nothing.
func (c *Coordinator) Preservation(ctx context.Context) (proto.PreserveCounters, []string, error) {
	return c.preservation(ctx, c.cfg.RunID)
}

func (c *Coordinator) preservation(ctx context.Context, runID string) (proto.PreserveCounters, []string, error) {
	var total proto.PreserveCounters
	var failures []string
	kv, err := c.stateKV(ctx)
	if err != nil {
		return total, nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, proto.PreserveResultPrefix(runID))
	if err != nil {
		return total, nil, fmt.Errorf("listing preservation results of run %s: %w", runID, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	// The lister closes its channel early, without an error, when ctx ends: the keys
	// seen so far are not all of them.
	if err := ctx.Err(); err != nil {
		return total, nil, fmt.Errorf("listing preservation results of run %s: %w", runID, err)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return total, nil, fmt.Errorf("reading %s: %w", k, err)
		}
		var r proto.PreserveResult
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return total, nil, fmt.Errorf("decoding %s: %w", k, err)
		}
		total.Add(r.Counters)
		for _, f := range r.Failures {
			if len(failures) < 10 {
				failures = append(failures, f)
			}
		}
	}
	return total, failures, nil
}

// preservationReason is why a run whose preservation did not all succeed failed, or "".
func preservationReason(p proto.PreserveCounters, failures []string) string {
	var parts []string
	if p.PreserveFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d release payloads could not be preserved", p.PreserveFailed))
	}
	if p.RemovalFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d release payload tags could not be removed", p.RemovalFailed))
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, ", ")
	if len(failures) > 0 {
		s += " (" + failures[0] + ")"
	}
	return s
}
