package worker

// Freeze arms w's freezer: at its next checkpoint the worker blocks, and sends no heartbeat
// until thawed, like a process under SIGSTOP. at receives the shard it froze on; thaw lets it
// go on (into the compare-and-swap it was about to make).
func Freeze(w *Worker) (at <-chan string, thaw func()) {
	gate, ch := make(chan struct{}), make(chan string, 1)
	w.freeze.mu.Lock()
	w.freeze.gate, w.freeze.at = gate, ch
	w.freeze.mu.Unlock()
	return ch, func() {
		w.freeze.mu.Lock()
		w.freeze.gate = nil
		w.freeze.mu.Unlock()
		close(gate)
	}
}
