// Package natsserver runs an embedded, in-process NATS server with JetStream: the local and
// single-machine mode of tagsweep and the backbone of its tests.
//
// The embedding gotchas are handled here once: nats-server's Port 0 means 4222 (a random port
// is -1), without NoSigs a SIGTERM would os.Exit the host process, an empty StoreDir is a
// directory shared by every process, and JetStream without limits reserves most of the
// machine's memory and disk. A store directory the caller gives is locked while a server
// uses it, so that two processes never run on one store.
package natsserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Defaults applied by Start to zero Config fields.
const (
	DefaultMaxMemory = 256 << 20 // JetStream memory storage limit
	DefaultMaxStore  = 4 << 30   // JetStream file storage limit
	readyTimeout     = 10 * time.Second
)

// Config configures the embedded server. Zero values mean the documented defaults.
type Config struct {
	// Dir is the JetStream store directory. "" means a new temporary directory that Close
	// removes: nothing survives the process. A Dir given is locked until Close (see
	// LockFile): a second Start on it, in this process or another, fails with a
	// *LockedError naming the holder, so that two servers never share one store.
	Dir string
	// Listen is the client address, "host:port". "" means no TCP listener at all: clients
	// connect in process through Connect. Port 0 or -1 means a random free port (unlike
	// nats-server itself, where 0 means 4222).
	Listen string
	// MaxMemory and MaxStore bound JetStream's memory and file storage, in bytes
	// (defaults DefaultMaxMemory and DefaultMaxStore).
	MaxMemory int64
	MaxStore  int64
	// Logger receives the server's log lines (notices at Info, debug at Debug). nil discards.
	Logger *slog.Logger
	// Name is the server's name; in a cluster every server needs its own. Default
	// "tagsweep-embedded".
	Name string
	// Options, when set, adjusts the server's options last, before the server starts: the
	// authorization, accounts and TLS of a locked-down server (tests of secured deployments
	// load a nats-server configuration file with ProcessConfigFile here).
	Options func(*server.Options) error
	// Cluster, when set, makes the server one node of a JetStream cluster of embedded servers
	// (tests and demos of the clustered deployment; production runs the NATS Helm chart).
	Cluster *Cluster
}

// Cluster configures a server's membership of a cluster. Streams and buckets created on a
// cluster of three are replicated with ledger.Config.Replicas 3 and survive the loss of one
// node.
type Cluster struct {
	// Name is the cluster's name, the same on every node. Required.
	Name string
	// Listen is the address other nodes route to, "host:port"; port 0 or -1 means a random
	// free port (see ClusterAddr).
	Listen string
	// Routes are the nodes' route addresses, "host:port"; a node's own address may be among
	// them (it is ignored), so every node can be given the same list. JetStream needs at least
	// one.
	Routes []string
}

// Server is a running embedded NATS server.
type Server struct {
	ns        *server.Server
	listening bool
	tempDir   string   // removed on Close; "" when the caller owns Dir
	lock      *dirLock // of the caller's Dir; nil for a temporary one
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.MaxMemory <= 0 {
		cfg.MaxMemory = DefaultMaxMemory
	}
	if cfg.MaxStore <= 0 {
		cfg.MaxStore = DefaultMaxStore
	}
	if cfg.Name == "" {
		cfg.Name = "tagsweep-embedded"
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		JetStream:          true,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true,
		NoLog:              cfg.Logger == nil,
		DontListen:         cfg.Listen == "",
		StoreDir:           cfg.Dir,
	}
	if cfg.Listen != "" {
		host, port, err := splitListen(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if c := cfg.Cluster; c != nil {
		if c.Name == "" || len(c.Routes) == 0 {
			return nil, fmt.Errorf("nats cluster: a name and at least one route are required")
		}
		host, port, err := splitListen(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats cluster: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		for _, r := range c.Routes {
			if _, _, err := net.SplitHostPort(r); err != nil {
				return nil, fmt.Errorf("nats cluster route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: r})
		}
	}
	if cfg.Options != nil {
		if err := cfg.Options(opts); err != nil {
			return nil, fmt.Errorf("nats server options: %w", err)
		}
	}
	s := &Server{listening: cfg.Listen != ""}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "tagsweep-nats-")
		if err != nil {
			return nil, fmt.Errorf("creating nats store dir: %w", err)
		}
		s.tempDir, opts.StoreDir = dir, dir
	} else {
		lock, err := lockDir(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("nats store: %w", err)
		}
		s.lock = lock
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("configuring nats server: %w", err)
	}
	logs := logAdapter{log: cfg.Logger, fatal: make(chan string, 1)}
	ns.SetLoggerV2(logs, false, false, false)
	go ns.Start()
	if err := waitReady(ns, logs.fatal); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		s.cleanup()
		return nil, err
	}
	s.ns = ns
	return s, nil
}

// waitReady waits until ns accepts connections. A listener that cannot bind (a port in use)
// makes nats-server log a fatal error and give up on that listener without stopping: that
// error is returned at once, instead of a bare timeout that says nothing of the cause.
func waitReady(ns *server.Server, fatal <-chan string) error {
	deadline := time.Now().Add(readyTimeout)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			return fmt.Errorf("nats server: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats server not ready after %s", readyTimeout)
		}
	}
	return nil
}

// splitListen parses "host:port", mapping port 0 to nats-server's random port.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("nats listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("nats listen address %q: bad port %q", addr, p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// Connect opens a client connection: in process when the server does not listen, else over
// TCP to ClientURL. Options are applied after tagsweep's own (a name), so they can override it.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.Name("tagsweep")}, opts...)
	url := ""
	if s.listening {
		url = s.ns.ClientURL()
	} else {
		all = append(all, nats.InProcessServer(s.ns))
	}
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connecting to embedded nats: %w", err)
	}
	return nc, nil
}

// ClientURL is the nats:// URL other processes can connect to, or "" when the server does
// not listen on TCP.
func (s *Server) ClientURL() string {
	if !s.listening {
		return ""
	}
	return s.ns.ClientURL()
}

// ClusterAddr is the "host:port" other nodes route to, or "" when the server is not in a
// cluster.
func (s *Server) ClusterAddr() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return addr.String()
}

// Close shuts the server down, waits for it, removes the temporary store directory if
// Start created one and releases the lock of one it was given. Client connections should be
// closed (or drained) first.
func (s *Server) Close() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.cleanup()
}

// cleanup removes the temporary store directory, or releases the lock of the caller's.
func (s *Server) cleanup() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
	s.lock.release()
}

// logAdapter forwards nats-server's printf-style logger to slog (log nil discards) and hands
// the first fatal error to Start.
type logAdapter struct {
	log   *slog.Logger
	fatal chan string // buffered 1
}

func (a logAdapter) logf(level slog.Level, format string, v ...any) {
	ctx := context.Background()
	if a.log != nil && a.log.Enabled(ctx, level) {
		a.log.Log(ctx, level, fmt.Sprintf(format, v...), slog.String("component", "nats"))
	}
}

func (a logAdapter) Noticef(format string, v ...any) { a.logf(slog.LevelInfo, format, v...) }
func (a logAdapter) Warnf(format string, v ...any)   { a.logf(slog.LevelWarn, format, v...) }
func (a logAdapter) Errorf(format string, v ...any)  { a.logf(slog.LevelError, format, v...) }
func (a logAdapter) Debugf(format string, v ...any)  { a.logf(slog.LevelDebug, format, v...) }
func (a logAdapter) Tracef(format string, v ...any)  { a.logf(slog.LevelDebug-4, format, v...) }

// Fatalf is logged at Error, and kept for Start: an embedded server must not exit the host
// process.
func (a logAdapter) Fatalf(format string, v ...any) {
	a.logf(slog.LevelError, format, v...)
	select {
	case a.fatal <- fmt.Sprintf(format, v...):
	default: // one is enough
	}
}
