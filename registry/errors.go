package registry

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Sentinels. Every client translates what the registry answered into these once, at its edge
// (answerError); callers branch on them with errors.Is.
var (
	// ErrNotFound: the tag (or repository) does not exist. For a delete it means "already gone".
	ErrNotFound = errors.New("not found")
	// ErrRateLimited: the registry answered 429 and retries at the client's layer ran out.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnauthorized: the registry refused the credentials (401 or 403). Retrying will not help.
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrAuthHostNotAllowed: authentication would send the registry's credentials to a host
	// other than the registry's own (a token realm elsewhere) that the configuration does not
	// allow.
	ErrAuthHostNotAllowed = errors.New("registry credentials go only to the registry's own host " +
		"and the auth hosts allowed explicitly (--auth-host)")
	// ErrKeysetUnsupported: the registry ignores tags/list?last= (Quay before 3.12).
	ErrKeysetUnsupported = errors.New("registry does not support keyset tag listing (tags/list?last=)")
	// ErrBadPage: a tags/list page broke the keyset contract (not ascending, or not after last).
	ErrBadPage = errors.New("registry returned an out-of-order tag page")
	// ErrIncompleteListing: the registry's listing cannot be trusted to be complete (it keeps
	// answering empty pages while saying, with Link rel="next", that more tags follow). A
	// range whose end is not proven must not look finished.
	ErrIncompleteListing = errors.New("registry listing is incomplete")
	// ErrDeleteUnsupported: the registry answered a tag delete with 400 or 405, which the OCI
	// distribution-spec reserves for "tag deletion is disabled". tagsweep never falls back to
	// deleting by digest, so such a registry cannot be pruned.
	ErrDeleteUnsupported = errors.New("registry does not support deleting tags (DELETE /v2/<name>/manifests/<tag>)")
	// ErrTagImmutable: Quay refused to delete or move an immutable tag (409).
	ErrTagImmutable = errors.New("tag is immutable")
	// ErrManifestGone: the manifest a deleted tag pointed at is no longer in the registry (its
	// garbage collector removed it, or Quay's time machine window passed), so the tag cannot
	// be put back at it.
	ErrManifestGone = errors.New("manifest no longer in the registry (garbage-collected)")
	// ErrNoImageReferences: no platform image of a payload holds proto.ImageReferencesPath.
	ErrNoImageReferences = errors.New("payload image has no " + proto.ImageReferencesPath)

	// errRefused is returned by a client's guard for a request the call does not allow.
	errRefused = errors.New("tagsweep refused to send the request")
)

// RetryAfterError carries a registry's Retry-After when it gave one.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return fmt.Sprintf("%v (retry after %s)", e.Err, e.After) }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// An api is an HTTP API whose answers statusSentinel reads: statuses mean the same to both
// but for two.
type api uint8

const (
	distributionAPI api = iota // /v2/: the OCI distribution API
	quayAPIv1                  // /api/v1/: Quay's own API
)

// statusSentinel returns the sentinel a failed answer's status means, nil when it means none
// that callers branch on. A distribution-spec DELETE answered 400 or 405 means that tag
// deletion is disabled; Quay's API v1 answers 409 for an immutable tag.
func statusSentinel(a api, method string, status int) error {
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrUnauthorized
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case a == distributionAPI && method == http.MethodDelete &&
		(status == http.StatusBadRequest || status == http.StatusMethodNotAllowed):
		return ErrDeleteUnsupported
	case a == quayAPIv1 && status == http.StatusConflict:
		return ErrTagImmutable
	}
	return nil
}

// answerError describes a failed answer: its status (0: not known), the registry's words
// (detail, already redacted) and the sentinel the status means, carrying the answer's
// Retry-After when a 429 had one. The caller wraps it with what the call was.
func answerError(a api, method string, status int, header http.Header, detail string) error {
	var wrapped error = statusSentinel(a, method, status)
	if status == http.StatusTooManyRequests {
		if after, ok := parseRetryAfter(header.Get("Retry-After"), time.Now()); ok {
			wrapped = &RetryAfterError{After: after, Err: ErrRateLimited}
		}
	}
	words := detail
	if status != 0 {
		words = fmt.Sprintf("http %d: %s", status, detail)
	}
	if wrapped == nil {
		return errors.New(words)
	}
	return fmt.Errorf("%s: %w", words, wrapped)
}

// maxErrDetail bounds the registry's own words carried in an error (regclient quotes up to
// 8 MiB of an error body).
const maxErrDetail = 512

// boundDetail cuts the registry's words to maxErrDetail bytes.
func boundDetail(s string) string {
	if len(s) > maxErrDetail {
		return s[:maxErrDetail] + "…"
	}
	return s
}

// authRefusedError is the error of a call whose authentication failed because the credential
// edge kept the credentials from a foreign token realm: it says that, not a bare 401.
func authRefusedError(what string, refused error) error {
	return fmt.Errorf("%s: %w%.0w", what, refused, ErrUnauthorized)
}

// maxRetryAfterSeconds is the longest Retry-After a time.Duration holds.
const maxRetryAfterSeconds = float64(math.MaxInt64) / float64(time.Second)

// parseRetryAfter reads a Retry-After value as of now: delay-seconds, whole or fractional
// (regclient reads fractions too), or an HTTP date in any of its three formats (a past one is
// a delay of 0). A negative, infinite or unreadable value is no Retry-After; a delay longer
// than a time.Duration holds is cut to the longest one.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
			return 0, false
		}
		if s >= maxRetryAfterSeconds {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
