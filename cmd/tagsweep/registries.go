package main

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
)

// registries is what the registry clients of one process share: the metrics their requests
// are counted in (every request sent, retries included), and one adaptive rate control per
// registry host, so that all the clients of a process (run's workers and its coordinator)
// back off together when the registry answers 429.
type registries struct {
	m *telemetry.Metrics

	mu       sync.Mutex
	controls map[string]*registry.RateControl
}

func newRegistries(m *telemetry.Metrics) *registries {
	return &registries{m: m, controls: make(map[string]*registry.RateControl)}
}

// config is the client configuration for host, instrumented and with host's shared rate
// control.
func (r *registries) config(cfg config.Config, host string, plainHTTP bool, concurrency int, log *slog.Logger) registry.OCIConfig {
	oc := ociConfig(cfg, host, plainHTTP, concurrency, log)
	oc.WrapTransport = r.m.Transport
	r.mu.Lock()
	defer r.mu.Unlock()
	rc, ok := r.controls[host]
	if !ok {
		rc = registry.NewRateControl(registry.RateControlConfig{})
		r.controls[host] = rc
	}
	oc.RateControl = rc
	return oc
}

// allowed is the request rate the process allows itself: bound (its --max-rps; 0 = none),
// lowered to the sum of the rates the rate controls allow once a registry has answered 429.
// 0 means unlimited.
func (r *registries) allowed(bound float64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	limited, sum := false, 0.0
	for _, rc := range r.controls {
		st := rc.Stats()
		if !st.Limited {
			sum = math.Inf(1) // this host is not paced: the bound alone applies
			continue
		}
		limited, sum = true, sum+st.Rate
	}
	switch {
	case !limited || math.IsInf(sum, 1):
		return bound
	case bound > 0:
		return min(bound, sum)
	}
	return sum
}

// publishRate sets the request-rate gauge to allowed(bound) now and every interval until
// ctx ends or stop is called; stop returns once it has stopped.
func (r *registries) publishRate(ctx context.Context, bound float64, interval time.Duration) (stop func()) {
	r.m.SetRequestRate(r.allowed(bound))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.m.SetRequestRate(r.allowed(bound))
			}
		}
	}()
	return func() { cancel(); <-done }
}
