package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// The HTTP paths a Server serves, and its default address. Kubernetes probes and the
// Prometheus scrape configuration in deploy/ use the same values (checked by deploy's tests).
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
	DefaultAddr = ":8080"
)

// errStopping is what /readyz reports once the server has been asked to stop.
var errStopping = errors.New("shutting down")

// ServerConfig configures a Server. Zero values mean the documented defaults.
type ServerConfig struct {
	// Addr is the address Run listens on. Default DefaultAddr (":8080").
	Addr string
	// Ready reports whether the process can do its work (a worker: connected to NATS with the
	// consumer bound). nil means always ready. It is called on every /readyz request, possibly
	// concurrently, so it must be cheap and must not block: read state, don't do I/O.
	Ready func() error
	// ShutdownTimeout bounds how long Run waits for in-flight requests when it stops. Default 5s.
	ShutdownTimeout time.Duration
	// Logger receives readiness changes and server errors. nil means discard.
	Logger *slog.Logger
}

// Server serves /metrics, /healthz (the process is alive) and /readyz (ServerConfig.Ready).
type Server struct {
	metrics  *Metrics
	cfg      ServerConfig
	log      *slog.Logger
	stopping atomic.Bool
	ready    atomic.Bool // last readiness answered, to log changes only
}

// NewServer returns a Server exposing m (nil: a fresh New()) as configured by cfg.
func NewServer(m *Metrics, cfg ServerConfig) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = New()
	}
	return &Server{metrics: m, cfg: cfg, log: log}
}

// Handler is the server's request handler, for tests and for callers that mount it elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathMetrics, s.metrics.Handler())
	mux.HandleFunc(PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(PathReadyz, s.serveReady)
	return mux
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	err := s.readiness()
	if was := s.ready.Swap(err == nil); was != (err == nil) {
		if err == nil {
			s.log.Info("ready")
		} else {
			s.log.Info("not ready", "err", err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) readiness() error {
	if s.stopping.Load() {
		return errStopping
	}
	if s.cfg.Ready == nil {
		return nil
	}
	return s.cfg.Ready()
}

// Run listens on the configured address and serves until ctx is done, then shuts down
// gracefully. It returns nil after a clean shutdown, and only once the server has stopped.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("telemetry server: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests listen on 127.0.0.1:0). Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("telemetry server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// Fail readiness first, so nothing new is routed here while we drain.
	s.stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("telemetry server shutdown: %w", err), srv.Close())
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("telemetry server on %s: %w", ln.Addr(), serr))
	}
	return err
}
