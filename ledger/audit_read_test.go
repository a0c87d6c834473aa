package ledger

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// Audit reads one run's events, and only reads: a bound ledger serves.
func TestAuditReadsOnly(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	for _, ev := range []proto.AuditEvent{
		{RunID: "r1", ShardID: "s1", Tag: "a", Outcome: proto.OutcomeDeleted},
		{RunID: "r2", ShardID: "s1", Tag: "b", Outcome: proto.OutcomeDeleted},
		{RunID: "r1", ShardID: "s2", Tag: "c", Outcome: proto.OutcomeAlreadyGone},
	} {
		if err := appendAudit(c, l, ev); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		run     string
		want    []string
		wantErr bool
	}{
		{run: "r1", want: []string{"a", "c"}},
		{run: "r2", want: []string{"b"}},
		{run: "none"},
		{run: "*", wantErr: true}, // a wildcard must not read every run's events
		{run: "r1.>", wantErr: true},
	}
	for _, tc := range tests {
		var got []string
		var gotErr error
		bound, err := Bind(c, js, Config{})
		if err != nil {
			t.Fatal(err)
		}
		for ev, err := range bound.Audit(c, tc.run) {
			if err != nil {
				gotErr = err
				break
			}
			got = append(got, ev.Tag)
		}
		if (gotErr != nil) != tc.wantErr || len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
			t.Errorf("Audit(%q) = %v, %v; want %v, error %v", tc.run, got, gotErr, tc.want, tc.wantErr)
		}
	}

	// Reading creates nothing: on a server where no ledger was opened, Bind says so, and an
	// audit stream removed under a bound ledger is not made again.
	empty := testServer(t).JS(t)
	if _, err := Bind(c, empty, Config{}); !errors.Is(err, ErrNoLedger) {
		t.Errorf("Bind on a server without a ledger = %v, want ErrNoLedger", err)
	}
	if _, err := empty.Stream(c, proto.StreamAudit); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Bind created the audit stream: %v", err)
	}
	if err := js.DeleteStream(c, proto.StreamAudit); err != nil {
		t.Fatal(err)
	}
	var gotErr error
	for _, err := range l.Audit(c, "r1") {
		gotErr = err
	}
	if !errors.Is(gotErr, ErrNoLedger) || !errors.Is(gotErr, jetstream.ErrStreamNotFound) {
		t.Errorf("Audit without an audit stream = %v, want ErrNoLedger and ErrStreamNotFound", gotErr)
	}
	if _, err := js.Stream(c, proto.StreamAudit); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Audit created the audit stream: %v", err)
	}
}
