package ledger

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tagsweep/tagsweep/proto"
)

// SavePreserveResult records what the claimed family or preserve shard did (res, whose run
// and shard are the claim's), replacing an earlier attempt's result. The worker saves it just
// before it marks the shard done, so a redelivered shard's result is its own, complete one.
func (c *Claim) SavePreserveResult(ctx context.Context, res proto.PreserveResult) error {
	res.V, res.RunID, res.ShardID = proto.Version, c.auditAs.RunID, c.auditAs.ShardID
	key := proto.PreserveResultKey(res.RunID, res.ShardID)
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	if _, err := c.l.state.Put(ctx, key, data); err != nil {
		return fmt.Errorf("recording %s: %w", key, err)
	}
	return nil
}

// PreserveResults returns the preservation results of a run's family and preserve shards, in
// key order. A result that does not decode is an error wrapping ErrBadRecord.
func (l *Ledger) PreserveResults(ctx context.Context, runID string) ([]proto.PreserveResult, error) {
	out, err := listRecords[proto.PreserveResult](ctx, l, proto.PreserveResultPrefix(runID))
	if err != nil {
		return nil, fmt.Errorf("listing preservation results of run %s: %w", runID, err)
	}
	return out, nil
}
