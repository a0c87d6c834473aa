package worker

import (
	"sync"
	"sync/atomic"
)

// freezer lets a test freeze a worker the way SIGSTOP freezes a process: once armed, the
// worker blocks at its next checkpoint, and while it is blocked it sends no heartbeat, so
// JetStream redelivers its shard to another worker. Thawing lets it go on into the
// compare-and-swap it was about to make. The zero value never freezes; only tests arm it
// (export_test.go).
type freezer struct {
	mu     sync.Mutex
	gate   chan struct{} // non-nil: armed; closed to thaw
	at     chan string   // receives the shard ID of the checkpoint that froze
	active atomic.Bool   // a checkpoint is blocked
}

// frozen reports whether the worker is frozen.
func (f *freezer) frozen() bool { return f.active.Load() }

// wait blocks the caller (about to checkpoint shardID) while the freezer is armed.
func (f *freezer) wait(shardID string) {
	f.mu.Lock()
	gate, at := f.gate, f.at
	f.mu.Unlock()
	if gate == nil {
		return
	}
	f.active.Store(true)
	select {
	case at <- shardID:
	default:
	}
	<-gate
	f.active.Store(false)
}
