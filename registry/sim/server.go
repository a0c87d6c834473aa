package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a Registry served over HTTP on a local listener.
type Server struct {
	*Registry
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	err  error // set before done is closed

	closeOnce sync.Once
	stop      func() bool
}

// Start serves a new registry on addr ("127.0.0.1:0" picks a free port) until ctx ends or
// Close is called.
func Start(ctx context.Context, addr string, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for simulated registry on %s: %w", addr, err)
	}
	reg := New(cfg)
	s := &Server{
		Registry: reg,
		ln:       ln,
		srv:      &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second},
		done:     make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("serve simulated registry: %w", err)
		}
	}()
	s.stop = context.AfterFunc(ctx, s.shutdown)
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the server's base URL, http://host:port.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Close stops the server at once, dropping open connections, and waits for it to end.
func (s *Server) Close() error {
	s.stop()
	s.shutdown()
	<-s.done
	return s.err
}

func (s *Server) shutdown() { s.closeOnce.Do(func() { _ = s.srv.Close() }) }
