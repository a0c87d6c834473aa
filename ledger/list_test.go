package ledger

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

// Shards lists every record of a run even while records are written all the time (workers
// checkpoint, split, finish): the watcher's own end-of-initial-values marker can come early
// then, and a listing that stopped there missed records, which made a split look like a gap.
func TestShardsCompleteUnderWrites(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	const n = 40
	claims := make([]*Claim, n)
	for i := range n {
		id := fmt.Sprintf("s%03d", i)
		mustCreate(t, l, newShard("r1", id, fmt.Sprintf("%03d", i), fmt.Sprintf("%03d~", i)))
		cl, err := l.Claim(c, "r1", id, "w", 1)
		if err != nil {
			t.Fatal(err)
		}
		claims[i] = cl
	}
	// Writers checkpoint every record over and over, well past the bucket's history.
	wctx, stop := context.WithCancel(c)
	var wg sync.WaitGroup
	for i, cl := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; wctx.Err() == nil; k++ {
				if err := cl.Checkpoint(wctx, fmt.Sprintf("%03d%06d", i, k), proto.Counters{Scanned: 1}); err != nil {
					return
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	for round := range 20 {
		// New records appear during the listing too.
		mustCreate(t, l, newShard("r1", fmt.Sprintf("new%03d", round), fmt.Sprintf("x%03d", round), fmt.Sprintf("x%03d~", round)))
		shards, err := l.Shards(c, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if want := n + round + 1; len(shards) < want {
			t.Fatalf("listing %d: %d records, want at least the %d written before it", round, len(shards), want)
		}
	}
}
