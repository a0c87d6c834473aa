package ledger

import (
	"testing"
	"time"
)

// Workers register their slots; Slots adds up those renewed lately, leaves out those gone
// quiet, and removes those quiet for an hour. A worker that stops unregisters.
func TestWorkerRegistrations(t *testing.T) {
	l, _ := testLedger(t)
	clk := &clock{t: time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC)}
	l.now = clk.now
	c := ctx(t)
	slots := func(wantSlots, wantWorkers int) {
		t.Helper()
		got, workers, err := l.Slots(c)
		if err != nil || got != wantSlots || workers != wantWorkers {
			t.Fatalf("Slots = %d slots of %d workers, %v; want %d of %d", got, workers, err, wantSlots, wantWorkers)
		}
	}
	slots(0, 0)
	for id, n := range map[string]int{"host-a.example.com/12": 4, "b": 3, "gone": 8} {
		if err := l.Register(c, id, n); err != nil {
			t.Fatal(err)
		}
	}
	slots(15, 3)
	clk.add(RegisterEvery)
	for _, id := range []string{"host-a.example.com/12", "b"} { // "gone" stops renewing
		if err := l.Register(c, id, 4); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(registrationLive - RegisterEvery/2)
	slots(8, 2)
	if err := l.Unregister(c, "b"); err != nil {
		t.Fatal(err)
	}
	if err := l.Unregister(c, "never-registered"); err != nil {
		t.Errorf("Unregister of an unknown worker = %v, want nil", err)
	}
	slots(4, 1)
	clk.add(registrationKept)
	if err := l.Register(c, "host-a.example.com/12", 4); err != nil {
		t.Fatal(err)
	}
	slots(4, 1) // and "gone" is removed
	recs, err := listRecords[struct{ ID string }](c, l, "worker.*")
	if err != nil || len(recs) != 1 {
		t.Errorf("registrations left: %v, %v; want only the live one", recs, err)
	}
}
