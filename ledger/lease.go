package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// LeaseHeldError says which live run holds a repository. It matches ErrLeaseHeld.
type LeaseHeldError struct {
	Lease proto.Lease
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("repository %s is held by run %s (%s) until %s", e.Lease.Repository, e.Lease.RunID,
		e.Lease.Holder, e.Lease.Expires.Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// AcquireLease takes the repository for runID until now+ttl, so that one run at a time
// prunes it. It succeeds when nobody holds the lease, when the lease has expired (the
// expiry is stored in the value and checked here, not left to server TTLs), or when runID
// already holds it (a coordinator re-attaching to its run). Otherwise it returns a
// *LeaseHeldError naming the holder. The holder keeps the lease with RenewLease.
func (l *Ledger) AcquireLease(ctx context.Context, repo, runID, holder string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("lease on %s: ttl must be positive", repo)
	}
	key := proto.LeaseKey(repo)
	for range casRetries {
		now := l.now().UTC()
		lease := proto.Lease{V: proto.Version, Repository: repo, RunID: runID, Holder: holder,
			Acquired: now, Expires: now.Add(ttl)}
		var cur proto.Lease
		rev, err := get(ctx, l.leases, key, &cur)
		if errors.Is(err, ErrNotFound) {
			_, err = create(ctx, l.leases, key, lease)
			if errors.Is(err, ErrExists) {
				continue
			}
			if err != nil {
				return fmt.Errorf("lease on %s: %w", repo, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("lease on %s: %w", repo, err)
		}
		if cur.RunID != runID && now.Before(cur.Expires) {
			return &LeaseHeldError{Lease: cur}
		}
		_, err = update(ctx, l.leases, key, lease, rev)
		if errors.Is(err, ErrFenced) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lease on %s: %w", repo, err)
		}
		if cur.RunID != runID {
			// The lease lapsed: its run's coordinator is gone. Say so in that run's record
			// (unless it holds another live lease); not knowing is no reason to refuse this run.
			_, _, _ = l.checkAbandoned(ctx, cur.RunID, cur)
		}
		return nil
	}
	return fmt.Errorf("lease on %s: too many concurrent updates: %w", repo, ErrFenced)
}

// RenewLease extends runID's lease on repo to now+ttl. If another run has taken the lease
// (ours expired) it returns a *LeaseHeldError; if the lease is gone, ErrNotFound.
func (l *Ledger) RenewLease(ctx context.Context, repo, runID string, ttl time.Duration) error {
	key := proto.LeaseKey(repo)
	var cur proto.Lease
	rev, err := get(ctx, l.leases, key, &cur)
	if err != nil {
		return fmt.Errorf("renewing lease on %s: %w", repo, err)
	}
	if cur.RunID != runID {
		return &LeaseHeldError{Lease: cur}
	}
	cur.V, cur.Expires = proto.Version, l.now().UTC().Add(ttl)
	if _, err := update(ctx, l.leases, key, cur, rev); err != nil {
		return fmt.Errorf("renewing lease on %s: %w", repo, err)
	}
	return nil
}

// ReleaseLease gives up runID's lease on repo. Releasing a lease runID does not hold (gone,
// or taken over after expiry) is not an error.
func (l *Ledger) ReleaseLease(ctx context.Context, repo, runID string) error {
	key := proto.LeaseKey(repo)
	var cur proto.Lease
	rev, err := get(ctx, l.leases, key, &cur)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing lease on %s: %w", repo, err)
	}
	if cur.RunID != runID {
		return nil
	}
	err = l.leases.Delete(ctx, key, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("releasing lease on %s: %w", repo, err)
	}
	return nil
}

// Lease reads the lease on repo (ErrNotFound when none), for status displays.
func (l *Ledger) Lease(ctx context.Context, repo string) (proto.Lease, error) {
	var cur proto.Lease
	_, err := get(ctx, l.leases, proto.LeaseKey(repo), &cur)
	return cur, err
}

// Coordinator reports whether run's coordinator is alive: it holds an unexpired lease on one
// of the run's repositories (it renews them every third of their life while it runs). lease
// is that lease, or the last one it held when it is still recorded; zero otherwise.
func (l *Ledger) Coordinator(ctx context.Context, run proto.RunRecord) (alive bool, lease proto.Lease, err error) {
	now := l.now()
	for _, repo := range run.Repositories {
		cur, err := l.Lease(ctx, repo)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return false, proto.Lease{}, err
		case cur.RunID != run.RunID:
			continue
		}
		lease = cur
		if now.Before(cur.Expires) {
			return true, cur, nil
		}
	}
	return false, lease, nil
}
