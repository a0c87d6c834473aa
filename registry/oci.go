package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/scheme"
	"github.com/regclient/regclient/types/ref"

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
	control     *RateControl
	redact      *redactor
	edge        *credentialEdge
	refs        sync.Map // repository name -> ref.Ref, for valid names
}

var _ Client = (*OCI)(nil)

// NewOCI returns a client for cfg.Host.
func NewOCI(cfg OCIConfig) (*OCI, error) {
	h, err := prepareHost(cfg, "oci registry")
	if err != nil {
		return nil, err
	}
	cfg = h.cfg
	g := &guard{base: h.edge, host: h.entry.Hostname, control: cfg.RateControl}
	return &OCI{rc: h.regClient(&http.Client{Transport: g}), name: h.entry.Name, callTimeout: cfg.CallTimeout,
		control: cfg.RateControl, redact: h.redact, edge: h.edge}, nil
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

// start waits for the adaptive rate control, then bounds one call by CallTimeout
// and hands its guard record to the transport. Waiting happens here, before the call's own
// timeouts start, so that a paced call never times out for having waited its turn;
// regclient's retries of the call are paced by the Retry-After the guard gives them.
func (o *OCI) start(ctx context.Context, c *call) (context.Context, context.CancelFunc, error) {
	ticket, err := o.control.WaitClass(ctx, c.class())
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for the adaptive request rate: %w", err)
	}
	c.ticket = ticket
	ctx, cancel := context.WithTimeout(ctx, o.callTimeout)
	return context.WithValue(ctx, callKey{}, c), cancel, nil
}

// listWhat and deleteWhat say what a call was, formatted only when an error needs it.
func listWhat(repo, last string) string { return fmt.Sprintf("list tags of %s after %q", repo, last) }

func deleteWhat(repo, tag string) string { return fmt.Sprintf("delete tag %s:%s", repo, tag) }

// repoRef returns regclient's reference to repo, checked against the repository grammar once
// per repository (a client works on a handful).
func (o *OCI) repoRef(repo string) (ref.Ref, error) {
	if r, ok := o.refs.Load(repo); ok {
		return r.(ref.Ref), nil
	}
	if !proto.ValidRepository(repo) {
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
