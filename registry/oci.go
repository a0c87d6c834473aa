package registry

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/ref"
	"golang.org/x/time/rate"

	"github.com/tagsweep/tagsweep/proto"
)

// Defaults of OCIConfig's zero values.
const (
	DefaultOCIConcurrency   = 64
	DefaultOCITimeout       = 30 * time.Second
	DefaultOCICallTimeout   = 2 * time.Minute
	DefaultOCIRetryLimit    = 5
	DefaultOCIRetryDelay    = 100 * time.Millisecond
	DefaultOCIRetryDelayMax = 30 * time.Second
	DefaultOCIUserAgent     = "tagsweep"
)

// maxListBody bounds the body of one tags/list answer: 1000 tags of 128 bytes are ~130 KiB.
const maxListBody = 16 << 20

// OCIConfig configures an OCI client. Zero values mean the documented defaults.
type OCIConfig struct {
	// Host is the registry as host[:port], for example "quay.io" or "127.0.0.1:5000". Required.
	Host string
	// PlainHTTP talks HTTP instead of HTTPS. For loopback and test registries only.
	PlainHTTP bool
	// DockerConfig is the path of a docker config.json holding the registry's credentials; the
	// file must exist. Empty means regclient's discovery: $DOCKER_CONFIG/config.json, else
	// ~/.docker/config.json, plus $DOCKER_AUTH_CONFIG; none of them is required.
	DockerConfig string
	// Username and Password, when set, take precedence over the docker config.
	Username string
	Password string
	// AuthHosts are the hosts other than Host, as host[:port], that may receive the
	// registry's credentials: token realms on another host. By default credentials go to
	// Host alone, and authentication that would send them elsewhere fails with
	// ErrAuthHostNotAllowed. A host is its name and port, the scheme's default port when none
	// is written (see credentialEdge).
	AuthHosts []string
	// Concurrency bounds the requests in flight to Host (regclient's per-host ReqConcurrent,
	// whose own default of 3 never applies here). Default 64.
	Concurrency int
	// MaxRPS bounds the List and Delete calls started per second (regclient's retries of a
	// call are paced by its backoff instead). Waiting honours ctx. 0 means unlimited.
	MaxRPS float64
	// Timeout bounds the wait for the answer to one HTTP request (until its status and
	// headers arrive), token fetches included; connecting is bounded by the dialer's 30s.
	// Bodies, small here, are bounded by CallTimeout. Default 30s.
	Timeout time.Duration
	// CallTimeout bounds one List or Delete as a whole, regclient's retries and backoff waits
	// included, so that a hung registry cannot hang a worker. Default 2m.
	CallTimeout time.Duration
	// RetryLimit is how often regclient retries a request that failed with 429, 408, 500, 502,
	// 504 or a transport error. Default 5.
	RetryLimit int
	// RetryDelay and RetryDelayMax bound regclient's per-host exponential backoff when the
	// registry sends no Retry-After. Defaults 100ms and 30s.
	RetryDelay    time.Duration
	RetryDelayMax time.Duration
	// UserAgent is sent on every request. Default "tagsweep".
	UserAgent string
	// RateControl paces the requests to Host adaptively (AIMD on 429, Retry-After honoured;
	// see RateControl). Give clients of one process for the same host the same controller so
	// that they back off together; nil means a new one with the default tuning.
	RateControl *RateControl
	// Logger receives regclient's warnings, with credentials redacted. Nil discards.
	Logger *slog.Logger
	// WrapTransport, if set, wraps the HTTP transport that sends the registry requests. The
	// wrapper sits under the client's request guard: it sees every request that goes to the
	// network (each of regclient's retries, token fetches), none that the guard refuses, and
	// the registry's answers as sent (Link headers included). For metrics
	// (telemetry.Metrics.Transport).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// LogValue logs the configuration without its password.
func (c OCIConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host),
		slog.Bool("plain_http", c.PlainHTTP),
		slog.String("docker_config", c.DockerConfig),
		slog.String("username", c.Username),
		slog.Bool("password_set", c.Password != ""),
		slog.Int("concurrency", c.Concurrency),
		slog.Float64("max_rps", c.MaxRPS),
		slog.Duration("timeout", c.Timeout),
		slog.Duration("call_timeout", c.CallTimeout),
		slog.Int("retry_limit", c.RetryLimit),
	)
}

// String formats the configuration without its password, so that %v and %+v are safe.
func (c OCIConfig) String() string { return c.LogValue().String() }

// OCI is a Client for any registry that speaks the OCI distribution API, built on regclient:
// regclient does authentication (docker config, basic and bearer tokens), TLS, per-host
// concurrency, and the retries with backoff on 429/408/500/502/504 and transport errors,
// honouring Retry-After. That is the only retry layer: OCI itself never repeats a request,
// and its callers should not repeat a failed call in a loop either.
//
// Every request regclient sends for a call passes a guard (see guard) that lets through
// exactly the one registry request the call means: GET /v2/<repo>/tags/list for List,
// DELETE /v2/<repo>/manifests/<tag> for Delete, HEAD /v2/<repo>/manifests/<tag> for Digest.
// So a List is one page (regclient cannot follow Link), and a Delete is one tag delete:
// nothing can ever delete by digest or push.
type OCI struct {
	rc          *regclient.RegClient
	name        string // regclient's name of the host, the Registry of every ref
	callTimeout time.Duration
	limiter     *rate.Limiter // nil: no MaxRPS
	control     *RateControl
	redact      *redactor
	edge        *credentialEdge
	refs        sync.Map // repository name -> ref.Ref, for names that passed repoRE
}

var _ Client = (*OCI)(nil)

// NewOCI returns a client for cfg.Host.
func NewOCI(cfg OCIConfig) (*OCI, error) {
	h, err := prepareHost(cfg, "oci registry")
	if err != nil {
		return nil, err
	}
	cfg = h.cfg
	// Keep a connection per request in flight: the default pool keeps 100 idle connections in
	// all, and past that every request beyond the 100th dials a new one (measured: a third
	// of a worker's CPU went to dialing at 256 deletes in flight). prepareHost set
	// MaxIdleConnsPerHost to Concurrency.
	h.base.MaxIdleConns = 0
	// Timeout as the transport's, not http.Client.Timeout: the client's arms a deadline
	// context and a timer for every request, 9% of a worker's allocations and 5% of its CPU
	// in the 1M-tag backlog; the transport's costs nothing per request.
	h.base.ResponseHeaderTimeout = cfg.Timeout
	g := &guard{base: h.transport(), host: h.host.Hostname, control: cfg.RateControl}
	rc := h.regClient(&http.Client{Transport: g})
	o := &OCI{rc: rc, name: h.host.Name, callTimeout: cfg.CallTimeout, control: cfg.RateControl, redact: h.redact, edge: h.edge}
	if cfg.MaxRPS > 0 {
		o.limiter = rate.NewLimiter(rate.Limit(cfg.MaxRPS), 1)
	}
	return o, nil
}

// hostSetup is what the OCI and Payload clients of a host share: the configuration with its
// defaults applied, regclient's host entries, the redactor of their secrets, and the base
// transport each client tunes before putting its guard over it.
type hostSetup struct {
	cfg    OCIConfig // defaults applied; Logger and RateControl never nil
	docker []config.Host
	host   *config.Host
	redact *redactor
	edge   *credentialEdge // sends through base (wrapped); see transport
	// base is a clone of http.DefaultTransport keeping up to Concurrency idle connections
	// to the host.
	base *http.Transport
}

// prepareHost validates cfg, applies its defaults and loads its credentials; what names the
// client in errors ("oci registry").
func prepareHost(cfg OCIConfig, what string) (hostSetup, error) {
	if cfg.Host == "" {
		return hostSetup{}, fmt.Errorf("%s: host is required", what)
	}
	if strings.Contains(cfg.Host, "://") || strings.ContainsAny(cfg.Host, "/ ") {
		return hostSetup{}, fmt.Errorf("%s: host %q must be host[:port], without scheme or path", what, cfg.Host)
	}
	if cfg.Concurrency < 0 || cfg.MaxRPS < 0 || cfg.Timeout < 0 || cfg.CallTimeout < 0 || cfg.RetryLimit < 0 ||
		cfg.RetryDelay < 0 || cfg.RetryDelayMax < 0 {
		return hostSetup{}, fmt.Errorf("%s: concurrency, max rps, timeouts, retry limit and delays must not be negative", what)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultOCIConcurrency)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultOCITimeout)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultOCICallTimeout)
	cfg.RetryLimit = cmp.Or(cfg.RetryLimit, DefaultOCIRetryLimit)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultOCIRetryDelay)
	cfg.RetryDelayMax = cmp.Or(cfg.RetryDelayMax, DefaultOCIRetryDelayMax)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, DefaultOCIUserAgent)
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
	host := config.HostNewName(cfg.Host)
	host.User = cfg.Username
	host.Pass = cfg.Password
	host.TLS = config.TLSEnabled
	if cfg.PlainHTTP {
		host.TLS = config.TLSDisabled
	}
	host.ReqConcurrent = int64(cfg.Concurrency)

	var secrets []string
	for _, h := range append(slices.Clone(docker), *host) {
		secrets = append(secrets, h.Pass, h.Token)
		if h.User != "" && h.Pass != "" {
			secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(h.User+":"+h.Pass)))
		}
	}

	redact := newRedactor(secrets)
	edge, err := newCredentialEdge(nil, cfg.Host, cfg.PlainHTTP, cfg.AuthHosts, redact)
	if err != nil {
		return hostSetup{}, fmt.Errorf("%s: %w", what, err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = cfg.Concurrency
	return hostSetup{cfg: cfg, docker: docker, host: host, redact: redact, edge: edge, base: base}, nil
}

// transport is the transport the client's guard sends through: the credential edge over the
// base transport, wrapped by WrapTransport if set. Tune base before calling it.
func (h hostSetup) transport() http.RoundTripper {
	h.edge.next = h.base
	if h.cfg.WrapTransport != nil {
		h.edge.next = h.cfg.WrapTransport(h.base)
	}
	return h.edge
}

// regClient returns a regclient for the host that sends through client, with the
// configured retries, user agent and a redacting logger.
func (h hostSetup) regClient(client *http.Client) *regclient.RegClient {
	return regclient.New(
		// Docker's entries first: each is a full host entry (TLS enabled, 3 concurrent
		// requests), and a later entry for the same host overrides the earlier one's fields.
		regclient.WithConfigHost(h.docker...),
		regclient.WithConfigHost(*h.host),
		regclient.WithRegOpts(
			reg.WithHTTPClient(client),
			reg.WithRetryLimit(h.cfg.RetryLimit),
			reg.WithDelay(h.cfg.RetryDelay, h.cfg.RetryDelayMax),
		),
		regclient.WithUserAgent(h.cfg.UserAgent),
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

// List returns one keyset page: at most n tags greater than last, in the registry's order.
// It sends exactly one tags/list request (plus regclient's auth and its retries of that
// request) and never follows Link. The page is checked with CheckPage: a page that breaks
// it is an error wrapping ErrBadPage, and also ErrKeysetUnsupported when it starts at or
// before last (the registry ignored last). More reports the registry's Link rel="next" as
// sent: a page shorter than n with More set is a registry capping n (Quay caps at 100); on
// CNCF Distribution a full final page still has More set and the next page is empty; a
// registry that never sends Link (go-containerregistry's) leaves More false on full pages.
// An unknown repository is an error wrapping ErrNotFound.
func (o *OCI) List(ctx context.Context, repo, last string, n int) (Page, error) {
	if n < 1 {
		// regclient omits n=0, and a tags/list without n returns every tag of the repository.
		return Page{}, fmt.Errorf("%s: page size %d must be at least 1", listWhat(repo, last), n)
	}
	r, err := o.repoRef(repo)
	if err != nil {
		return Page{}, fmt.Errorf("%s: %w", listWhat(repo, last), err)
	}
	c := &call{method: http.MethodGet, path: "/v2/" + repo + "/tags/list"}
	callCtx, cancel, err := o.start(ctx, c)
	if err != nil {
		return Page{}, fmt.Errorf("%s: %w", listWhat(repo, last), err)
	}
	defer cancel()
	tl, err := o.rc.TagList(callCtx, r, scheme.WithTagLast(last), scheme.WithTagLimit(n))
	if err != nil {
		return Page{}, o.edgeError(ctx, callCtx, c, listWhat(repo, last), err)
	}
	tags := tl.Tags
	if err := CheckPage(last, tags); err != nil {
		if last != "" && tags[0] <= last {
			// The page restarts at or before last: the registry ignores it (Quay < 3.12).
			return Page{}, fmt.Errorf("%s: page starts at %q: %w: %w", listWhat(repo, last), tags[0], ErrKeysetUnsupported, err)
		}
		return Page{}, fmt.Errorf("%s: %w", listWhat(repo, last), err)
	}
	links, _ := c.result()
	more := hasNextLink(links)
	if len(tags) > n {
		// The registry ignored n. The keyset is intact: the caller goes on after tags[n-1].
		tags, more = tags[:n], true
	}
	return Page{Tags: tags, More: more, Date: c.date()}, nil
}

// Delete deletes one tag with DELETE /v2/<repo>/manifests/<tag>: 202 or 200 is success, 404
// an error wrapping ErrNotFound (already gone), 400 or 405 one wrapping ErrDeleteUnsupported.
//
// It never deletes by digest, which would remove every tag sharing the manifest. regclient's
// TagDelete falls back to pushing a dummy manifest over the tag and deleting that by digest
// when the registry refuses the tag delete, and it sends the tag delete without retries; so
// Delete uses regclient's lower-level ManifestDelete, which sends DELETE manifests/<Digest>
// verbatim through regclient's retrying client, with the tag (checked against the tag grammar,
// which has no ':', so it can never be a digest) as the reference. The guard lets through no
// other request for the call, whatever regclient might try.
func (o *OCI) Delete(ctx context.Context, repo, tag string) error {
	if !proto.ValidTag(tag) {
		return fmt.Errorf("%s: not a valid tag name", deleteWhat(repo, tag))
	}
	r, err := o.repoRef(repo)
	if err != nil {
		return fmt.Errorf("%s: %w", deleteWhat(repo, tag), err)
	}
	r.Digest = tag // see above: the reference sent is the tag
	c := &call{method: http.MethodDelete, path: "/v2/" + repo + "/manifests/" + tag}
	callCtx, cancel, err := o.start(ctx, c)
	if err != nil {
		return fmt.Errorf("%s: %w", deleteWhat(repo, tag), err)
	}
	defer cancel()
	err = o.rc.ManifestDelete(callCtx, r)
	if _, status := c.result(); status == http.StatusAccepted || status == http.StatusOK {
		return nil // regclient reports 200 as an error: it expects 202 only
	}
	if err == nil {
		return fmt.Errorf("%s: regclient reported success without a 202 or 200 from the registry", deleteWhat(repo, tag))
	}
	return o.edgeError(ctx, callCtx, c, deleteWhat(repo, tag), err)
}

// Exists reports whether tag exists in repo, asked directly with HEAD
// /v2/<repo>/manifests/<tag> rather than read from a listing: true on 200, false on 404.
// The guard lets through no other request for the call (no GET fallback).
func (o *OCI) Exists(ctx context.Context, repo, tag string) (bool, error) {
	what := fmt.Sprintf("check tag %s:%s", repo, tag)
	if !proto.ValidTag(tag) {
		return false, fmt.Errorf("%s: not a valid tag name", what)
	}
	r, err := o.repoRef(repo)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	c := &call{method: http.MethodHead, path: "/v2/" + repo + "/manifests/" + tag}
	callCtx, cancel, err := o.start(ctx, c)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	defer cancel()
	_, err = o.rc.ManifestHead(callCtx, r.SetTag(tag))
	if _, status := c.result(); status == http.StatusOK {
		return true, nil
	}
	if err == nil {
		return false, fmt.Errorf("%s: regclient reported success without a 200 from the registry", what)
	}
	err = o.edgeError(ctx, callCtx, c, what, err)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// RateControl is the client's adaptive rate controller (for its state in logs and metrics).
func (o *OCI) RateControl() *RateControl { return o.control }

// start waits for the adaptive rate control and MaxRPS, then bounds one call by CallTimeout
// and hands its guard record to the transport. Waiting happens here, before the call's own
// timeouts start, so that a paced call never times out for having waited its turn;
// regclient's retries of the call are paced by the Retry-After the guard gives them.
func (o *OCI) start(ctx context.Context, c *call) (context.Context, context.CancelFunc, error) {
	ticket, err := o.control.WaitClass(ctx, c.class())
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for the adaptive request rate: %w", err)
	}
	c.ticket = ticket
	if o.limiter != nil {
		if err := o.limiter.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("waiting for the request rate limit: %w", context.Cause(ctx))
			}
			// The limiter refuses at once a wait that would outlast ctx's deadline.
			return nil, nil, fmt.Errorf("waiting for the request rate limit: %v: %w", err, context.DeadlineExceeded)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.callTimeout)
	return context.WithValue(ctx, callKey{}, c), cancel, nil
}

var (
	// repoRE is the distribution-spec repository name grammar.
	repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
)

// listWhat and deleteWhat say what a call was, for its errors only: formatting it for every
// call cost 2% of a worker's CPU.
func listWhat(repo, last string) string { return fmt.Sprintf("list tags of %s after %q", repo, last) }

func deleteWhat(repo, tag string) string { return fmt.Sprintf("delete tag %s:%s", repo, tag) }

// repoRef returns regclient's reference to repo, checked against the repository grammar once
// per repository (a client works on a handful).
func (o *OCI) repoRef(repo string) (ref.Ref, error) {
	if r, ok := o.refs.Load(repo); ok {
		return r.(ref.Ref), nil
	}
	if !repoRE.MatchString(repo) {
		return ref.Ref{}, fmt.Errorf("%q is not a valid repository name", repo)
	}
	r := ref.Ref{Scheme: "reg", Registry: o.name, Repository: repo}
	r.Reference = r.CommonName()
	o.refs.Store(repo, r)
	return r, nil
}

// edgeError translates a failed call once, from the HTTP status the guard saw last rather
// than from regclient's error text, into the sentinels callers branch on. The registry's
// words are kept, redacted and bounded; regclient's error value itself is not wrapped, so
// that no credential can leak through it.
func (o *OCI) edgeError(parent, callCtx context.Context, c *call, what string, err error) error {
	detail := o.redact.apply(err.Error())
	// regclient's own prefix ("failed to delete manifest <ref>: request failed: ") names the
	// tag as a digest reference and repeats what `what` says; keep the registry's words.
	if _, after, ok := strings.Cut(detail, "request failed: "); ok {
		detail = after
	}
	detail = boundDetail(detail)
	status, header := c.answer()
	refused := o.edge.refusal()
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("%s: %w", what, context.Cause(parent))
	case refused != nil && (status == 0 || status == http.StatusUnauthorized || status == http.StatusForbidden):
		return authRefusedError(what, refused)
	case statusSentinel(distributionAPI, c.method, status) == nil && callCtx.Err() != nil:
		return fmt.Errorf("%s: no answer within %s: %s: %w", what, o.callTimeout, detail, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", what, answerError(distributionAPI, c.method, status, header, detail))
}

// callKey carries a *call in a request's context, the way net/http/httptrace carries a
// ClientTrace: regclient passes the call's context to every request it sends for the call.
type callKey struct{}

// call is the one registry request a List or Delete may send, and what the registry
// answered to its last attempt.
type call struct {
	method, path string
	ticket       Ticket // the first attempt's pass from the rate control (OCI.start)

	mu       sync.Mutex
	attempts int
	status   int
	header   http.Header
}

// attempt starts an attempt at the call's request and returns its rate-control ticket: the
// call's own for the first attempt, a new one, waited for, for each of regclient's retries.
func (c *call) attempt(ctx context.Context, rc *RateControl) (Ticket, error) {
	c.mu.Lock()
	c.status, c.header = 0, nil
	c.attempts++
	retry := c.attempts > 1
	c.mu.Unlock()
	if !retry {
		return c.ticket, nil
	}
	return rc.WaitClass(ctx, c.class())
}

// class is the call's class of request for the rate control: registries limit tags/list and
// manifests separately, so a Digest's HEAD counts with the deletes ("delete": the manifests
// endpoint).
func (c *call) class() string {
	if c.method == http.MethodGet {
		return "list"
	}
	return "delete"
}

// answered records the status and, of the headers, the three the call reads (Link,
// Retry-After, Date): cloning every answer's whole header cost 8% of a worker's allocations.
func (c *call) answered(status int, header http.Header) {
	var kept http.Header
	for _, k := range [...]string{"Link", "Retry-After", "Date"} {
		if v := header.Values(k); len(v) > 0 {
			if kept == nil {
				kept = make(http.Header, 2)
			}
			kept[k] = slices.Clone(v)
		}
	}
	c.mu.Lock()
	c.status, c.header = status, kept
	c.mu.Unlock()
}

// result returns the Link header values and the status of the last attempt.
func (c *call) result() (links []string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header.Values("Link"), c.status
}

// date returns the last attempt's Date header, zero when it had none or it does not parse.
func (c *call) date() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := http.ParseTime(c.header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return d
}

// answer returns the status and the kept headers of the last attempt (not to be modified).
func (c *call) answer() (int, http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status, c.header
}

// registryAPIPath reports whether p is a path of the distribution API that reads or writes
// repository content: /v2/, a name without a newline, then /tags/list, /manifests/, /blobs/ or
// /referrers/ (the regexp ^/v2/.+/(?:tags/list|manifests/|blobs/|referrers/) written out: the
// guards ask it of every request and answer, and the regexp's backtracking cost a fifth of a
// restore's CPU). Token endpoints (Quay's /v2/auth, a realm elsewhere) are not such paths.
func registryAPIPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || rest == "" {
		return false
	}
	nl := strings.IndexByte(rest, '\n')
	if nl < 0 {
		nl = len(rest)
	}
	for _, m := range [...]string{"/tags/list", "/manifests/", "/blobs/", "/referrers/"} {
		// The first occurrence after the name's first byte: a later one has it before it.
		if i := strings.Index(rest[1:], m); i >= 0 && i+1 <= nl {
			return true
		}
	}
	return false
}

// guard is the transport under regclient. It lets through the call's one registry request
// and what authentication needs (token GET and POST), refuses every other request to the
// registry API and every PUT, PATCH or other DELETE, and, for tags/list,
// moves the Link header out of regclient's sight into the call record, so that regclient
// never follows it.
type guard struct {
	base    http.RoundTripper
	host    string // host[:port] of the registry in request URLs
	control *RateControl
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(callKey{}).(*call)
	if c == nil || req.Method != c.method || req.URL.Host != g.host || req.URL.Path != c.path {
		switch {
		case req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != http.MethodPost,
			registryAPIPath(req.URL.Path):
			closeBody(req)
			return nil, fmt.Errorf("%w: %s %s", errRefused, req.Method, req.URL.Path)
		}
		return g.base.RoundTrip(req)
	}
	ticket, err := c.attempt(req.Context(), g.control)
	if err != nil {
		return nil, err
	}
	g.control.SentClass(c.class())
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c.answered(resp.StatusCode, resp.Header) // the registry's own headers, for edgeError
	if after, ok := g.control.Observe(ticket, resp.StatusCode, resp.Header); ok {
		// A 429 without Retry-After: tell regclient, the one retry layer, to retry when the
		// controller's lowered rate allows rather than escalate its own per-host backoff.
		// regclient reads Retry-After as seconds and accepts fractions.
		resp.Header.Set("Retry-After", after)
	}
	if c.method == http.MethodGet {
		resp.Header.Del("Link")
		resp.Body = &limitedBody{rc: resp.Body, left: maxListBody}
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// limitedBody fails a read past its limit instead of silently truncating.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("tags/list answer larger than %d bytes", maxListBody)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// hasNextLink reports whether Link header values (RFC 8288) hold a link with rel "next".
// The target is not needed: the next page is asked for with last=<last tag of this page>.
func hasNextLink(values []string) bool {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				break
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			v = v[end+1:]
			var rel string
			v, rel = linkParams(v)
			if slices.Contains(strings.Fields(strings.ToLower(rel)), "next") {
				return true
			}
		}
	}
	return false
}

// linkParams reads the ";name=value" parameters of one link-value and returns the rest of
// the header after it and the value of its rel parameter.
func linkParams(v string) (rest, rel string) {
	for {
		v = strings.TrimLeft(v, " \t")
		if !strings.HasPrefix(v, ";") {
			return v, rel
		}
		v = strings.TrimLeft(v[1:], " \t")
		i := strings.IndexAny(v, "=;,")
		if i < 0 {
			return "", rel
		}
		name := strings.ToLower(strings.TrimSpace(v[:i]))
		if v[i] != '=' {
			v = v[i:]
			continue
		}
		v = strings.TrimLeft(v[i+1:], " \t")
		var value string
		if strings.HasPrefix(v, `"`) {
			end := 1
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			value = strings.ReplaceAll(v[1:min(end, len(v))], `\`, "")
			v = v[min(end+1, len(v)):]
		} else {
			end := strings.IndexAny(v, ";,")
			if end < 0 {
				end = len(v)
			}
			value, v = strings.TrimSpace(v[:end]), v[end:]
		}
		if name == "rel" && rel == "" {
			rel = value
		}
	}
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
