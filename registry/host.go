package registry

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"
)

// host is one registry host as a client reaches it, the same way for the OCI, Payload and
// Quay clients: its address and scheme, the user agent, the redactor of the client's secrets,
// and the credential edge that every request goes through, over one clone of
// http.DefaultTransport.
type host struct {
	baseURL   string // scheme://host[:port]
	userAgent string
	redact    *redactor
	edge      *credentialEdge // the transport of the client's requests (under its guard)
}

// hostConfig is what newHost needs to know of a client's host.
type hostConfig struct {
	what        string // names the client in errors ("oci registry")
	addr        string // host[:port], checked with checkHost
	plainHTTP   bool
	authHosts   []string      // the hosts besides addr that may receive the credentials
	concurrency int           // the requests in flight: each keeps its idle connection
	timeout     time.Duration // the wait for an answer's status and headers
	userAgent   string        // "" means DefaultOCIUserAgent
	secrets     []string      // the configured credentials, redacted from every error
	wrap        func(http.RoundTripper) http.RoundTripper
}

// checkHost checks that addr is host[:port]; what names the client in errors.
func checkHost(what, addr string) error {
	if addr == "" {
		return fmt.Errorf("%s: host is required", what)
	}
	if strings.Contains(addr, "://") || strings.ContainsAny(addr, "/ ") {
		return fmt.Errorf("%s: host %q must be host[:port], without scheme or path", what, addr)
	}
	return nil
}

// newHost sets up the transport to c.addr: a clone of http.DefaultTransport that keeps a
// connection per request in flight, wrapped by c.wrap if set, under the credential edge.
func newHost(c hostConfig) (*host, error) {
	redact := newRedactor(c.secrets)
	edge, err := newCredentialEdge(nil, c.addr, c.plainHTTP, c.authHosts, redact)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.what, err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// The default pool keeps 100 idle connections in all: past that, every request beyond the
	// 100th in flight would dial a connection of its own.
	base.MaxIdleConns = 0
	base.MaxIdleConnsPerHost = c.concurrency
	// The timeout as the transport's rather than http.Client.Timeout, which arms a deadline
	// context and a timer for every request; bodies are bounded by each call's context.
	base.ResponseHeaderTimeout = c.timeout
	edge.next = base
	if c.wrap != nil {
		edge.next = c.wrap(base)
	}
	scheme := "https"
	if c.plainHTTP {
		scheme = "http"
	}
	return &host{baseURL: scheme + "://" + c.addr, userAgent: cmp.Or(c.userAgent, DefaultOCIUserAgent),
		redact: redact, edge: edge}, nil
}

// hostSetup is what the regclient-based clients (OCI, Payload) of a host share: the host, the
// configuration with its defaults applied, and regclient's host entries.
type hostSetup struct {
	*host
	cfg    OCIConfig // defaults applied; Logger and RateControl never nil
	docker []config.Host
	entry  *config.Host
}

// prepareHost validates cfg, applies its defaults, loads its credentials and sets up its
// host; what names the client in errors ("oci registry").
func prepareHost(cfg OCIConfig, what string) (hostSetup, error) {
	if err := checkHost(what, cfg.Host); err != nil {
		return hostSetup{}, err
	}
	if cfg.Concurrency < 0 || cfg.Timeout < 0 || cfg.CallTimeout < 0 || cfg.RetryLimit < 0 ||
		cfg.RetryDelay < 0 || cfg.RetryDelayMax < 0 {
		return hostSetup{}, fmt.Errorf("%s: concurrency, timeouts, retry limit and delays must not be negative", what)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultOCIConcurrency)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultOCITimeout)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultOCICallTimeout)
	cfg.RetryLimit = cmp.Or(cfg.RetryLimit, DefaultOCIRetryLimit)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultOCIRetryDelay)
	cfg.RetryDelayMax = cmp.Or(cfg.RetryDelayMax, DefaultOCIRetryDelayMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RateControl == nil {
		cfg.RateControl = NewRateControl(RateControlConfig{})
	}

	docker, err := loadDockerConfig(cfg.DockerConfig, what)
	if err != nil {
		return hostSetup{}, err
	}
	entry := config.HostNewName(cfg.Host)
	entry.User = cfg.Username
	entry.Pass = cfg.Password
	entry.TLS = config.TLSEnabled
	if cfg.PlainHTTP {
		entry.TLS = config.TLSDisabled
	}
	entry.ReqConcurrent = int64(cfg.Concurrency)

	var secrets []string
	for _, h := range append(slices.Clone(docker), *entry) {
		secrets = append(secrets, h.Pass, h.Token)
		if h.User != "" && h.Pass != "" {
			secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(h.User+":"+h.Pass)))
		}
	}
	h, err := newHost(hostConfig{what: what, addr: cfg.Host, plainHTTP: cfg.PlainHTTP, authHosts: cfg.AuthHosts,
		concurrency: cfg.Concurrency, timeout: cfg.Timeout, userAgent: cfg.UserAgent, secrets: secrets,
		wrap: cfg.WrapTransport})
	if err != nil {
		return hostSetup{}, err
	}
	return hostSetup{host: h, cfg: cfg, docker: docker, entry: entry}, nil
}

// regClient returns a regclient for the host that sends through client, with the
// configured retries, user agent and a redacting logger.
func (h hostSetup) regClient(client *http.Client) *regclient.RegClient {
	return regclient.New(
		// Docker's entries first: each is a full host entry (TLS enabled, 3 concurrent
		// requests), and a later entry for the same host overrides the earlier one's fields.
		regclient.WithConfigHost(h.docker...),
		regclient.WithConfigHost(*h.entry),
		regclient.WithRegOpts(
			reg.WithHTTPClient(client),
			reg.WithRetryLimit(h.cfg.RetryLimit),
			reg.WithDelay(h.cfg.RetryDelay, h.cfg.RetryDelayMax),
		),
		regclient.WithUserAgent(h.userAgent),
		regclient.WithSlog(slog.New(&redactHandler{inner: h.cfg.Logger.Handler(), redact: h.redact})),
	)
}

// loadDockerConfig reads the registry logins of a docker config: the named file, which must
// exist, or else regclient's default places. what names the client in errors.
func loadDockerConfig(path, what string) ([]config.Host, error) {
	if path == "" {
		hosts, err := config.DockerLoad()
		if err != nil {
			return nil, fmt.Errorf("%s: load docker config: %w", what, err)
		}
		return hosts, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s: docker config: %w", what, err)
	}
	hosts, err := config.DockerLoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: load docker config %s: %w", what, path, err)
	}
	return hosts, nil
}

// redactHandler passes regclient's warnings and errors to the injected logger, with
// credentials redacted from the message and every attribute. regclient's debug and trace
// records (every request with its URL) are dropped.
type redactHandler struct {
	inner  slog.Handler
	redact *redactor
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.inner.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.redact.apply(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		attrs := v.Group()
		out := make([]slog.Attr, len(attrs))
		for i, ga := range attrs {
			out[i] = h.attr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return slog.String(a.Key, h.redact.apply(v.String()))
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.attr(a)
	}
	return &redactHandler{inner: h.inner.WithAttrs(out), redact: h.redact}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{inner: h.inner.WithGroup(name), redact: h.redact}
}
