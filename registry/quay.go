package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Defaults of QuayConfig's zero values.
const (
	DefaultQuayConcurrency   = 32
	DefaultQuayTimeout       = 30 * time.Second
	DefaultQuayCallTimeout   = 5 * time.Minute
	DefaultQuayRetryLimit    = 8
	DefaultQuayRetryDelay    = 250 * time.Millisecond
	DefaultQuayRetryDelayMax = 30 * time.Second
)

// QuayConfig configures a Quay API v1 client. Zero values mean the documented defaults.
type QuayConfig struct {
	// Host is the Quay server as host[:port], for example "quay.io". Required.
	Host string
	// PlainHTTP talks HTTP instead of HTTPS. For loopback and test servers only.
	PlainHTTP bool
	// Token is the OAuth application token sent as "Authorization: Bearer" on every call.
	// Required. It is never logged and never part of an error.
	Token string
	// RateControl paces the requests adaptively (see RateControl). Quay's nginx keeps one
	// bucket for /api/ apart from /v2/'s, so give this client its own controller, shared only
	// with other API v1 clients of the same host. Nil means a new one.
	RateControl *RateControl
	// Concurrency is how many requests the caller keeps in flight: the client keeps as many
	// idle connections to Host. Default 32.
	Concurrency int
	// Timeout bounds one HTTP exchange. Default 30s.
	Timeout time.Duration
	// CallTimeout bounds one call as a whole, retries and backoff waits included.
	// Default 5m.
	CallTimeout time.Duration
	// RetryLimit is how often a call is retried after a 500, 502, 503, 504 or a transport
	// error, and a quarter of how often after a 429 (which RateControl paces). Default 8.
	RetryLimit int
	// RetryDelay and RetryDelayMax bound the exponential backoff between attempts when the
	// server sends no Retry-After. Defaults 250ms and 30s.
	RetryDelay    time.Duration
	RetryDelayMax time.Duration
	// UserAgent is sent on every request. Default "tagsweep".
	UserAgent string
	// WrapTransport, if set, wraps the HTTP transport that sends the requests (as
	// OCIConfig.WrapTransport does; for metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Logger receives a warning when the client slows down. Nil discards.
	Logger *slog.Logger
}

// LogValue logs the configuration without its token.
func (c QuayConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host),
		slog.Bool("plain_http", c.PlainHTTP),
		slog.Bool("token_set", c.Token != ""),
		slog.Duration("timeout", c.Timeout),
		slog.Duration("call_timeout", c.CallTimeout),
		slog.Int("retry_limit", c.RetryLimit),
	)
}

// String formats the configuration without its token, so that %v and %+v are safe.
func (c QuayConfig) String() string { return c.LogValue().String() }

// Quay is a client of Quay's API v1 tag endpoints, authenticated with an OAuth token:
// deleting a tag (a registry.Deleter, for `--delete-api quay-v1`), creating or moving a tag
// to a manifest, and reading a tag's digest. Tags are never listed through API v1 (its
// OFFSET pages shift under deletes) and nothing is ever deleted by digest.
//
// It is the only retry layer for its calls: a 429, 500, 502, 503, 504 or transport error is
// retried, a 5xx or transport error after an exponential backoff, a 429 after its Retry-After.
// Quay's nginx answers 429 without Retry-After: such a 429 is retried as soon as the client's
// RateControl, which it has just slowed down, lets it through, so that a 429 slows every
// caller of the client down rather than failing their deletes.
type Quay struct {
	cfg     QuayConfig
	base    string // scheme://host
	ua      string // the User-Agent
	client  *http.Client
	log     *slog.Logger
	redact  *redactor
	control *RateControl
	logged  atomic.Int64 // RateControl's decreases when the last warning was logged
}

var _ Deleter = (*Quay)(nil)

// NewQuay returns a Quay API v1 client.
func NewQuay(cfg QuayConfig) (*Quay, error) {
	const what = "quay api"
	if err := checkHost(what, cfg.Host); err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, errors.New("quay api: an OAuth token is required")
	}
	if cfg.Concurrency < 0 || cfg.Timeout < 0 || cfg.CallTimeout < 0 || cfg.RetryLimit < 0 || cfg.RetryDelay < 0 || cfg.RetryDelayMax < 0 {
		return nil, errors.New("quay api: concurrency, timeouts, retry limit and delays must not be negative")
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultQuayConcurrency)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultQuayTimeout)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultQuayCallTimeout)
	cfg.RetryLimit = cmp.Or(cfg.RetryLimit, DefaultQuayRetryLimit)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultQuayRetryDelay)
	cfg.RetryDelayMax = max(cmp.Or(cfg.RetryDelayMax, DefaultQuayRetryDelayMax), cfg.RetryDelay)
	h, err := newHost(hostConfig{what: what, addr: cfg.Host, plainHTTP: cfg.PlainHTTP, concurrency: cfg.Concurrency,
		timeout: cfg.Timeout, userAgent: cfg.UserAgent, secrets: []string{cfg.Token}, wrap: cfg.WrapTransport})
	if err != nil {
		return nil, err
	}
	q := &Quay{
		cfg:  cfg,
		base: h.baseURL,
		ua:   h.userAgent,
		client: &http.Client{
			Transport: h.edge,
			Timeout:   cfg.Timeout, // the whole exchange: an answer's body is small
			// API v1 does not redirect; following one could send the token elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:     cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		redact:  h.redact,
		control: cfg.RateControl,
	}
	if q.control == nil {
		q.control = NewRateControl(RateControlConfig{})
	}
	return q, nil
}

// Delete deletes one tag with DELETE /api/v1/repository/<repo>/tag/<tag>. 204 (or another
// 2xx) is success; 404 an error wrapping ErrNotFound (already gone); 409 one wrapping
// ErrTagImmutable; 401 and 403 ErrUnauthorized; 429 after the retries ErrRateLimited.
func (q *Quay) Delete(ctx context.Context, repo, tag string) error {
	what := fmt.Sprintf("delete tag %s:%s through quay api v1", repo, tag)
	path, err := q.tagPath(repo, tag)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = q.do(ctx, what, http.MethodDelete, path, nil)
	return err
}

// Tag creates tag, or moves it, to the manifest digest with PUT
// /api/v1/repository/<repo>/tag/<tag> {"manifest_digest": digest}. The manifest must exist in
// repo: Quay answers 404 otherwise, an error wrapping ErrNotFound.
func (q *Quay) Tag(ctx context.Context, repo, tag, digest string) error {
	what := fmt.Sprintf("tag %s:%s at %s through quay api v1", repo, tag, digest)
	return q.sendDigest(ctx, what, http.MethodPut, repo, tag, "", digest)
}

// sendDigest sends {"manifest_digest": digest} with method to the API v1 path of repo's tag,
// followed by suffix: how Quay points a tag at a manifest (PUT) or restores it (POST).
func (q *Quay) sendDigest(ctx context.Context, what, method, repo, tag, suffix, digest string) error {
	path, err := q.tagPath(repo, tag)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !proto.ValidDigest(digest) {
		return fmt.Errorf("%s: not a sha256 digest", what)
	}
	body, err := json.Marshal(map[string]string{"manifest_digest": digest})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = q.do(ctx, what, method, path+suffix, body)
	return err
}

// Digest returns the manifest digest of the live tag, from GET
// /api/v1/repository/<repo>/tag/?specificTag=<tag>&onlyActiveTags=true. An absent tag is an
// error wrapping ErrNotFound.
func (q *Quay) Digest(ctx context.Context, repo, tag string) (string, error) {
	what := fmt.Sprintf("digest of %s:%s through quay api v1", repo, tag)
	if !proto.ValidRepository(repo) || !proto.ValidTag(tag) {
		return "", fmt.Errorf("%s: invalid repository or tag name", what)
	}
	v := url.Values{"specificTag": {tag}, "onlyActiveTags": {"true"}, "limit": {"1"}}
	body, err := q.do(ctx, what, http.MethodGet, "/api/v1/repository/"+repo+"/tag/?"+v.Encode(), nil)
	if err != nil {
		return "", err
	}
	var list struct {
		Tags []struct {
			Name           string `json:"name"`
			ManifestDigest string `json:"manifest_digest"`
		} `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return "", fmt.Errorf("%s: decode answer: %w", what, err)
	}
	for _, t := range list.Tags {
		if t.Name == tag && proto.ValidDigest(t.ManifestDigest) {
			return t.ManifestDigest, nil
		}
	}
	return "", fmt.Errorf("%s: %w", what, ErrNotFound)
}

func (q *Quay) tagPath(repo, tag string) (string, error) {
	if !proto.ValidRepository(repo) {
		return "", fmt.Errorf("%q is not a valid repository name", repo)
	}
	if !proto.ValidTag(tag) {
		return "", fmt.Errorf("%q is not a valid tag name", tag)
	}
	return "/api/v1/repository/" + repo + "/tag/" + tag, nil
}

// maxQuayBody bounds an API v1 answer read into memory (one tag's row, or an error).
const maxQuayBody = 1 << 20

// do sends one call, retrying what may be retried, and returns the answer's body on success.
func (q *Quay) do(ctx context.Context, what, method, path string, body []byte) ([]byte, error) {
	callCtx, cancel := context.WithTimeout(ctx, q.cfg.CallTimeout)
	defer cancel()
	var lastErr error
	failures, throttled := 0, 0
	for {
		ticket, err := q.control.Wait(callCtx)
		if err != nil {
			return nil, q.stopped(ctx, what, lastErr, err)
		}
		q.control.Sent()
		status, header, data, err := q.send(callCtx, method, path, body)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", what, context.Cause(ctx))
			}
			lastErr = errors.New(q.redact.apply(err.Error()))
		case status == http.StatusTooManyRequests:
			// Retried as soon as RateControl, slowed down by this answer, lets the request
			// through (after the Retry-After, when there is one); not counted as a failure.
			q.control.Observe(ticket, status, header)
			lastErr = answerError(quayAPIv1, method, status, header, q.detail(data))
			if throttled++; throttled > 4*q.cfg.RetryLimit {
				return nil, fmt.Errorf("%s: %d answers 429: %w", what, throttled, lastErr)
			}
			if st := q.control.Stats(); q.logged.Swap(st.Decreases) != st.Decreases {
				q.log.Warn("quay api rate limited (429): slowing down", slog.String("rate", q.control.String()))
			}
			continue
		case status >= 200 && status < 300:
			q.control.Observe(ticket, status, header)
			return data, nil
		case status == http.StatusInternalServerError, status == http.StatusBadGateway,
			status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
			q.control.Observe(ticket, status, header)
			lastErr = answerError(quayAPIv1, method, status, header, q.detail(data))
		default:
			q.control.Observe(ticket, status, header)
			return nil, fmt.Errorf("%s: %w", what, answerError(quayAPIv1, method, status, header, q.detail(data)))
		}
		if failures++; failures > q.cfg.RetryLimit {
			return nil, fmt.Errorf("%s: %d attempts: %w", what, failures+throttled, lastErr)
		}
		t := time.NewTimer(q.backoff(failures - 1))
		select {
		case <-t.C:
		case <-callCtx.Done():
			t.Stop()
			return nil, q.stopped(ctx, what, lastErr, context.Cause(callCtx))
		}
	}
}

// stopped is the error of a call whose wait ended early: the caller's context, or the call's
// own timeout with the last failure seen.
func (q *Quay) stopped(parent context.Context, what string, lastErr, cause error) error {
	if parent.Err() != nil {
		return fmt.Errorf("%s: %w", what, context.Cause(parent))
	}
	if lastErr != nil {
		return fmt.Errorf("%s: no success within %s: %w", what, q.cfg.CallTimeout, lastErr)
	}
	return fmt.Errorf("%s: %v: %w", what, cause, context.DeadlineExceeded)
}

func (q *Quay) send(ctx context.Context, method, path string, body []byte) (int, http.Header, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, q.base+path, r)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+q.cfg.Token)
	req.Header.Set("User-Agent", q.ua)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxQuayBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// detail is the server's own words from an error answer, redacted and bounded.
func (q *Quay) detail(data []byte) string {
	var e struct {
		ErrorMessage string `json:"error_message"`
		Detail       string `json:"detail"`
		Message      string `json:"message"`
	}
	s := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &e) == nil {
		s = cmp.Or(e.ErrorMessage, e.Detail, e.Message, s)
	}
	return cmp.Or(boundDetail(q.redact.apply(s)), "(no detail)")
}

// RateControl is the client's adaptive rate controller (for its state in logs and metrics).
func (q *Quay) RateControl() *RateControl { return q.control }

// backoff is the delay before retry attempt+1: exponential with full jitter.
func (q *Quay) backoff(attempt int) time.Duration {
	d := q.cfg.RetryDelay << min(attempt, 20)
	if d <= 0 || d > q.cfg.RetryDelayMax {
		d = q.cfg.RetryDelayMax
	}
	return d/2 + rand.N(d/2+1)
}
