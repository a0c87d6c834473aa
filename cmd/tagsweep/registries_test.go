package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
)

// limitedControl returns a rate control that has seen a 429, and the rate it allows.
func limitedControl(t *testing.T) (*registry.RateControl, float64) {
	t.Helper()
	rc := registry.NewRateControl(registry.RateControlConfig{})
	tk, err := rc.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rc.Sent()
	rc.Observe(tk, http.StatusTooManyRequests, http.Header{})
	st := rc.Stats()
	if !st.Limited || st.Rate <= 0 {
		t.Fatalf("rate control after a 429: %+v, want limited", st)
	}
	return rc, st.Rate
}

func TestRegistriesAllowed(t *testing.T) {
	a, ra := limitedControl(t)
	b, rb := limitedControl(t)
	free := registry.NewRateControl(registry.RateControlConfig{})
	tests := []struct {
		name     string
		controls map[string]*registry.RateControl
		bound    float64
		want     float64
	}{
		{"no registry yet: the bound", nil, 50, 50},
		{"not paced, no bound: unlimited", map[string]*registry.RateControl{"q": free}, 0, 0},
		{"paced: its rate", map[string]*registry.RateControl{"q": a}, 0, ra},
		{"paced below the bound", map[string]*registry.RateControl{"q": a}, ra + 100, ra},
		{"bound below the paced rate", map[string]*registry.RateControl{"q": a}, ra / 2, ra / 2},
		{"one host not paced: the bound alone", map[string]*registry.RateControl{"q": a, "r": free}, 40, 40},
		{"two paced hosts: their sum", map[string]*registry.RateControl{"q": a, "r": b}, 0, ra + rb},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegistries(telemetry.New())
			for h, rc := range tc.controls {
				r.controls[h] = rc
			}
			if got := r.allowed(tc.bound); got != tc.want {
				t.Errorf("allowed(%v) = %v, want %v", tc.bound, got, tc.want)
			}
		})
	}
}

// The clients of one process share one rate control per host and are instrumented.
func TestRegistriesConfig(t *testing.T) {
	m := telemetry.New()
	r := newRegistries(m)
	cfg := config.Config{}
	q1 := r.config(cfg, "quay.io", false, 4, nil)
	q2 := r.config(cfg, "quay.io", false, 68, nil)
	other := r.config(cfg, "registry.example", false, 4, nil)
	if q1.RateControl == nil || q1.RateControl != q2.RateControl || other.RateControl == q1.RateControl {
		t.Errorf("rate controls: quay.io %p and %p, other %p; want one per host", q1.RateControl, q2.RateControl, other.RateControl)
	}
	if q1.WrapTransport == nil {
		t.Fatal("no WrapTransport: registry requests would not be counted")
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := r.publishRate(ctx, 25, time.Hour)
	if got := scrape(t, metricsBody(t, m), telemetry.MetricRequestRate); got != 25 {
		t.Errorf("request rate gauge = %v, want the bound 25", got)
	}
	stop() // returns although ctx is still live
}
