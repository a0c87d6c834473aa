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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of QuayConfig's zero values.
const (
	DefaultQuayTimeout       = 30 * time.Second
	DefaultQuayCallTimeout   = 5 * time.Minute
	DefaultQuayRetryLimit    = 8
	DefaultQuayRetryDelay    = 250 * time.Millisecond
	DefaultQuayRetryDelayMax = 30 * time.Second
	// DefaultQuayThrottleRPS is the rate a client falls back to at the first 429 when it had
	// no MaxRPS: Quay's nginx allows 5 r/s per IP on /api/ (registry-apis.md §1).
	DefaultQuayThrottleRPS = 5
	// minQuayRPS is the floor the adaptive rate never goes below.
	minQuayRPS = 0.2
	// rpsStep is what each success adds to the adaptive rate: +1 r/s per 20 calls.
	rpsStep = 0.05
)

// ErrTagImmutable: Quay refused to delete or move an immutable tag (409).
var ErrTagImmutable = errors.New("tag is immutable")

// QuayConfig configures a Quay API v1 client. Zero values mean the documented defaults.
type QuayConfig struct {
	// Host is the Quay server as host[:port], for example "quay.io". Required.
	Host string
	// PlainHTTP talks HTTP instead of HTTPS. For loopback and test servers only.
	PlainHTTP bool
	// Token is the OAuth application token sent as "Authorization: Bearer" on every call.
	// Required. It is never logged and never part of an error.
	Token string
	// MaxRPS bounds the requests started per second (retries included); 0 means no bound
	// until Quay answers 429, after which the client paces itself (see Quay).
	MaxRPS float64
	// Timeout bounds one HTTP exchange. Default 30s.
	Timeout time.Duration
	// CallTimeout bounds one call as a whole, retries and backoff waits included.
	// Default 5m.
	CallTimeout time.Duration
	// RetryLimit is how often a call is retried after a 429, 500, 502, 503, 504 or a
	// transport error. Default 8.
	RetryLimit int
	// RetryDelay and RetryDelayMax bound the exponential backoff between attempts when the
	// server sends no Retry-After. Defaults 250ms and 30s.
	RetryDelay    time.Duration
	RetryDelayMax time.Duration
	// UserAgent is sent on every request. Default "tagsweep".
	UserAgent string
	// Transport carries the requests; nil means a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives a warning when the client slows down. Nil discards.
	Logger *slog.Logger
}

// LogValue logs the configuration without its token.
func (c QuayConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host),
		slog.Bool("plain_http", c.PlainHTTP),
		slog.Bool("token_set", c.Token != ""),
		slog.Float64("max_rps", c.MaxRPS),
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
// retried with backoff, honouring Retry-After. Quay's nginx answers 429 without Retry-After,
// so the client also paces itself: the first 429 caps its rate (MaxRPS, or
// DefaultQuayThrottleRPS when unbounded), every 429 halves it, and every success raises it a
// little, back up to MaxRPS; a 429 thus slows every caller of the client down rather than
// failing their deletes.
type Quay struct {
	cfg    QuayConfig
	base   string // scheme://host
	client *http.Client
	log    *slog.Logger
	redact redactor

	mu      sync.Mutex
	limiter *rate.Limiter // nil until MaxRPS or the first 429
	ceiling float64       // MaxRPS, or +Inf
	pause   time.Time     // no request starts before this (after a 429)
	gen     uint64        // how often the rate was cut; a request remembers it when sent
}

var _ Deleter = (*Quay)(nil)

// NewQuay returns a Quay API v1 client.
func NewQuay(cfg QuayConfig) (*Quay, error) {
	if cfg.Host == "" {
		return nil, errors.New("quay api: host is required")
	}
	if strings.Contains(cfg.Host, "://") || strings.ContainsAny(cfg.Host, "/ ") {
		return nil, fmt.Errorf("quay api: host %q must be host[:port], without scheme or path", cfg.Host)
	}
	if cfg.Token == "" {
		return nil, errors.New("quay api: an OAuth token is required")
	}
	if cfg.MaxRPS < 0 || cfg.Timeout < 0 || cfg.CallTimeout < 0 || cfg.RetryLimit < 0 || cfg.RetryDelay < 0 || cfg.RetryDelayMax < 0 {
		return nil, errors.New("quay api: max rps, timeouts, retry limit and delays must not be negative")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultQuayTimeout)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultQuayCallTimeout)
	cfg.RetryLimit = cmp.Or(cfg.RetryLimit, DefaultQuayRetryLimit)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultQuayRetryDelay)
	cfg.RetryDelayMax = max(cmp.Or(cfg.RetryDelayMax, DefaultQuayRetryDelayMax), cfg.RetryDelay)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, DefaultOCIUserAgent)
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		tr = t
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	scheme := "https"
	if cfg.PlainHTTP {
		scheme = "http"
	}
	q := &Quay{
		cfg:  cfg,
		base: scheme + "://" + cfg.Host,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// API v1 does not redirect; following one could send the token elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:     log,
		redact:  newRedactor([]string{cfg.Token}),
		ceiling: cfg.MaxRPS,
	}
	if cfg.MaxRPS > 0 {
		q.limiter = rate.NewLimiter(rate.Limit(cfg.MaxRPS), 1)
	} else {
		q.ceiling = float64(rate.Inf)
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
	path, err := q.tagPath(repo, tag)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !digestRE.MatchString(digest) {
		return fmt.Errorf("%s: not a sha256 digest", what)
	}
	body, err := json.Marshal(map[string]string{"manifest_digest": digest})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = q.do(ctx, what, http.MethodPut, path, body)
	return err
}

// Digest returns the manifest digest of the live tag, from GET
// /api/v1/repository/<repo>/tag/?specificTag=<tag>&onlyActiveTags=true. An absent tag is an
// error wrapping ErrNotFound.
func (q *Quay) Digest(ctx context.Context, repo, tag string) (string, error) {
	what := fmt.Sprintf("digest of %s:%s through quay api v1", repo, tag)
	if !repoRE.MatchString(repo) || !tagRE.MatchString(tag) {
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
		if t.Name == tag && digestRE.MatchString(t.ManifestDigest) {
			return t.ManifestDigest, nil
		}
	}
	return "", fmt.Errorf("%s: %w", what, ErrNotFound)
}

// digestRE is a canonical sha256 digest.
var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

func (q *Quay) tagPath(repo, tag string) (string, error) {
	if !repoRE.MatchString(repo) {
		return "", fmt.Errorf("%q is not a valid repository name", repo)
	}
	if !tagRE.MatchString(tag) {
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
	for attempt := 0; ; attempt++ {
		gen, err := q.wait(callCtx)
		if err != nil {
			return nil, q.stopped(ctx, what, lastErr, err)
		}
		status, header, data, err := q.send(callCtx, method, path, body)
		var retryAfter time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", what, context.Cause(ctx))
			}
			lastErr = errors.New(q.redact.apply(err.Error()))
		case status >= 200 && status < 300:
			q.succeeded()
			return data, nil
		case status == http.StatusTooManyRequests:
			after, hasAfter := parseRetryAfter(header)
			q.throttled(gen, hasAfter)
			err := error(ErrRateLimited)
			if hasAfter {
				retryAfter = after
				err = &RetryAfterError{After: after, Err: ErrRateLimited}
			}
			lastErr = fmt.Errorf("http 429: %s: %w", q.detail(data), err)
		case status == http.StatusInternalServerError, status == http.StatusBadGateway,
			status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
			lastErr = fmt.Errorf("http %d: %s", status, q.detail(data))
		default:
			return nil, q.final(what, status, data)
		}
		if attempt >= q.cfg.RetryLimit {
			return nil, fmt.Errorf("%s: %d attempts: %w", what, attempt+1, lastErr)
		}
		delay := retryAfter
		if delay == 0 {
			delay = q.backoff(attempt)
		}
		t := time.NewTimer(delay)
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

// final translates an answer that is not retried into an error.
func (q *Quay) final(what string, status int, data []byte) error {
	detail := q.detail(data)
	switch status {
	case http.StatusNotFound:
		return fmt.Errorf("%s: %s: %w", what, detail, ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s: http %d: %s: %w", what, status, detail, ErrUnauthorized)
	case http.StatusConflict:
		return fmt.Errorf("%s: %s: %w", what, detail, ErrTagImmutable)
	}
	return fmt.Errorf("%s: http %d: %s", what, status, detail)
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
	req.Header.Set("User-Agent", q.cfg.UserAgent)
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
	s = q.redact.apply(s)
	if len(s) > maxErrDetail {
		s = s[:maxErrDetail] + "…"
	}
	return cmp.Or(s, "(no detail)")
}

// wait holds a request back until the pause after a 429 has passed and the rate allows it.
// It returns the generation of the rate the request was scheduled under: taken before
// waiting, since a request scheduled before a cut leaves at the old pace.
func (q *Quay) wait(ctx context.Context) (uint64, error) {
	q.mu.Lock()
	pause, lim, gen := q.pause, q.limiter, q.gen
	q.mu.Unlock()
	if d := time.Until(pause); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, context.Cause(ctx)
		}
	}
	if lim != nil {
		if err := lim.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			return 0, fmt.Errorf("waiting for the request rate: %v: %w", err, context.DeadlineExceeded)
		}
	}
	return gen, nil
}

// throttled slows the client down after a 429 to a request sent under generation gen: the
// rate is capped (first time) or halved, but only by a request scheduled after the last cut (the
// requests in flight when the bucket ran dry all see a 429 for the same excess, as TCP cuts
// its window once per round trip); and without Retry-After every request pauses for a moment,
// so that they do not all hit the empty bucket again at once.
func (q *Quay) throttled(gen uint64, hasRetryAfter bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var next float64
	switch {
	case q.limiter == nil:
		next = min(DefaultQuayThrottleRPS, q.ceiling)
		q.limiter = rate.NewLimiter(rate.Limit(next), 1)
	case gen == q.gen:
		next = max(float64(q.limiter.Limit())/2, minQuayRPS)
		q.limiter.SetLimit(rate.Limit(next))
	default:
		next = float64(q.limiter.Limit())
	}
	if !hasRetryAfter {
		if until := time.Now().Add(time.Duration(float64(time.Second) / next)); until.After(q.pause) {
			q.pause = until
		}
	}
	if gen == q.gen {
		q.gen++
		q.log.Warn("quay api rate limited (429): slowing down", slog.Float64("rps", next))
	}
}

// succeeded raises the rate a little (additive increase), back towards the ceiling.
func (q *Quay) succeeded() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.limiter == nil {
		return
	}
	cur := float64(q.limiter.Limit())
	if cur >= q.ceiling {
		return
	}
	q.limiter.SetLimit(rate.Limit(min(cur+rpsStep, q.ceiling)))
}

// Rate is the client's current request rate bound (+Inf when unbounded).
func (q *Quay) Rate() float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.limiter == nil {
		return float64(rate.Inf)
	}
	return float64(q.limiter.Limit())
}

// backoff is the delay before retry attempt+1: exponential with full jitter.
func (q *Quay) backoff(attempt int) time.Duration {
	d := q.cfg.RetryDelay << min(attempt, 20)
	if d <= 0 || d > q.cfg.RetryDelayMax {
		d = q.cfg.RetryDelayMax
	}
	return d/2 + rand.N(d/2+1)
}

func parseRetryAfter(h http.Header) (time.Duration, bool) {
	s := strings.TrimSpace(h.Get("Retry-After"))
	if s == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(s); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
