package ledger

import (
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

// An audit event the client refuses to send at once (here: its connection is closed) is not
// dropped: the claim's next write stores it, before the checkpoint that covers its tag.
func TestAuditRefusedEventStoredByNextWrite(t *testing.T) {
	l, js, srv := testLedgerServer(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	cl, err := l.Claim(c, "r1", "s1", "w", 1)
	if err != nil {
		t.Fatal(err)
	}
	// The same ledger on a connection that is then closed.
	closed := *l
	closed.js = connect(t, srv)
	closed.js.Conn().Close()
	cl.l = &closed
	if err := cl.Audit(proto.AuditEvent{Tag: "20250101000000_prune_a", Outcome: proto.OutcomeDeleted}); err != nil {
		t.Fatalf("Audit on a closed connection = %v, want the event kept", err)
	}
	cl.l = l
	if err := cl.Checkpoint(c, "2025", proto.Counters{Scanned: 1, Eligible: 1, Deleted: 1}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if n := streamMsgs(t, js, proto.StreamAudit); n != 1 {
		t.Fatalf("audit stream holds %d events, want the refused one", n)
	}
}
