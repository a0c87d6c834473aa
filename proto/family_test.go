package proto

import "testing"

func TestPayloadFamily(t *testing.T) {
	tests := []struct {
		tag  string
		want bool
	}{
		{"rc_payload__4.22.0", true},
		{"rc_payload__4.22.0__component__cli", true},
		{"preserved__rc_payload__4.22.0", true},
		{"remove__rc_payload__4.22.0", true},
		{"rc_payload__", true}, // the bare prefix: no payload, but never the prune rule's either
		{"rc_payload_x", false},
		{"preserved__rc_payload_x", false},
		{"remove__x", false},
		{"xrc_payload__4.1", false},
		{"Rc_payload__4.1", false},
		{"20000101000000_prune_rc_payload__4.1", false},
		{"latest", false},
	}
	for _, tt := range tests {
		if got := PayloadFamily(tt.tag); got != tt.want {
			t.Errorf("PayloadFamily(%q) = %v, want %v", tt.tag, got, tt.want)
		}
	}
}
