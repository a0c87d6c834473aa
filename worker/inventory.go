package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// An inventory run (proto.ModeInventory, `tagsweep ls`) is listed by the same loop as a
// pruning run (prune: pages, prefetch, checkpoints, splits), with inventory in place of page:
// each page is counted into the shard record and nothing is deleted. The worker holds to that
// on its own, whatever the coordinator wrote: an inventory run's shards must be KindList and
// KindList shards must belong to an inventory run (checkKind), and an inventory run's registry
// client refuses every delete (listOnly), so no shard of such a run can send a DELETE.

// errListOnly is what an inventory run's registry client answers to a delete.
var errListOnly = errors.New("inventory run: deletes are refused")

// listOnly is the registry client of an inventory run: it lists (and checks that a tag
// exists, when the client can), and refuses every delete without sending it.
type listOnly struct{ c registry.Client }

// List lists with the wrapped client.
func (l listOnly) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	return l.c.List(ctx, repo, last, n)
}

// Delete refuses.
func (listOnly) Delete(context.Context, string, string) error {
	return permanent(errListOnly)
}

// Exists asks the wrapped client, which a proven-empty listing needs (checkListed).
func (l listOnly) Exists(ctx context.Context, repo, tag string) (bool, error) {
	checker, ok := l.c.(registry.Checker)
	if !ok {
		return false, errors.New("this registry client cannot check whether a tag exists")
	}
	return checker.Exists(ctx, repo, tag)
}

// checkKind refuses a shard whose kind does not fit its run's mode: an inventory run only
// lists (KindList), and a list shard only belongs to an inventory run.
func checkKind(run proto.RunRecord, kind proto.ShardKind) error {
	switch {
	case run.Mode == proto.ModeInventory && kind != proto.KindList:
		return fmt.Errorf("run %s is an inventory run: refusing its %q shard, which could delete", run.RunID, kind)
	case run.Mode != proto.ModeInventory && kind == proto.KindList:
		return fmt.Errorf("run %s is not an inventory run: refusing its list shard", run.RunID)
	case run.Mode != proto.ModeInventory && run.Mode != proto.ModePrune:
		return fmt.Errorf("run %s has mode %q, which this worker does not know", run.RunID, run.Mode)
	}
	switch kind {
	case proto.KindPrune, proto.KindFamily, proto.KindPreserve, proto.KindList:
		return nil
	}
	return fmt.Errorf("shard kind %q is not supported by this worker", kind)
}

// inventory counts one listed page (all inside the shard's range) of a list shard: every tag
// is scanned, the run's policy says which would be eligible, kept or invalid, the prune tags
// are counted per day of their timestamp and the release-payload family's tags by role. It
// deletes nothing. The counts go into the checkpoint of the page.
func (w *Worker) inventory(claim *ledger.Claim, rules *policy.Rules, tags []string) (proto.Counters, *proto.Inventory) {
	inv := &proto.Inventory{}
	t := newTally(claim.Record())
	day, n := "", int64(0) // a page's tags are ascending: count a day's run of tags at once
	for _, tag := range tags {
		d := t.decide(rules, tag)
		if d.Verdict == policy.Delete {
			t.stats.DryRun++
		}
		if !d.Time.IsZero() {
			if dd := d.Time.Format("2006-01-02"); dd != day {
				if n > 0 {
					inv.AddDay(day, n)
				}
				day, n = dd, 0
			}
			n++
		}
		switch role, _, _ := preserve.Classify(tag); role {
		case preserve.RolePayload:
			inv.Families.Payloads++
		case preserve.RoleMarker:
			inv.Families.Markers++
		case preserve.RoleRemoval:
			inv.Families.RemovalRequests++
		case preserve.RoleComponent:
			inv.Families.Components++
		}
	}
	if n > 0 {
		inv.AddDay(day, n)
	}
	t.stats.Scanned = int(t.delta.Scanned)
	w.cfg.Observer.PageDone(t.stats)
	return t.delta, inv
}
