package registry

import (
	"errors"
	"math"
	"net/http"
	"testing"
	"time"
)

// TestParseRetryAfter holds every form a registry's Retry-After may take: delay-seconds,
// whole or fractional, and the three HTTP date formats.
func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	later := now.Add(time.Minute)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"   ", 0, false},
		{"2", 2 * time.Second, true},
		{" 2 ", 2 * time.Second, true},
		{"+2", 2 * time.Second, true},
		{"0", 0, true},
		{"0.25", 250 * time.Millisecond, true},
		{"1e400", 0, false},
		{"1e300", time.Duration(math.MaxInt64), true},
		{"-1", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{later.Format(http.TimeFormat), time.Minute, true},
		{later.Format(time.RFC850), time.Minute, true},
		{later.Format(time.ANSIC), time.Minute, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
		{"2s", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStatusSentinel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		api    api
		method string
		status int
		want   error
	}{
		{distributionAPI, http.MethodGet, http.StatusNotFound, ErrNotFound},
		{quayAPIv1, http.MethodDelete, http.StatusNotFound, ErrNotFound},
		{distributionAPI, http.MethodGet, http.StatusUnauthorized, ErrUnauthorized},
		{quayAPIv1, http.MethodPut, http.StatusForbidden, ErrUnauthorized},
		{distributionAPI, http.MethodDelete, http.StatusTooManyRequests, ErrRateLimited},
		{distributionAPI, http.MethodDelete, http.StatusBadRequest, ErrDeleteUnsupported},
		{distributionAPI, http.MethodDelete, http.StatusMethodNotAllowed, ErrDeleteUnsupported},
		{distributionAPI, http.MethodGet, http.StatusMethodNotAllowed, nil},
		{quayAPIv1, http.MethodDelete, http.StatusBadRequest, nil},
		{quayAPIv1, http.MethodDelete, http.StatusConflict, ErrTagImmutable},
		{distributionAPI, http.MethodDelete, http.StatusConflict, nil},
		{distributionAPI, http.MethodGet, http.StatusInternalServerError, nil},
		{distributionAPI, http.MethodGet, 0, nil},
	}
	for _, tt := range tests {
		if got := statusSentinel(tt.api, tt.method, tt.status); got != tt.want {
			t.Errorf("statusSentinel(%d, %s, %d) = %v, want %v", tt.api, tt.method, tt.status, got, tt.want)
		}
	}
}

func TestAnswerError(t *testing.T) {
	t.Parallel()
	err := answerError(distributionAPI, http.MethodDelete, http.StatusTooManyRequests,
		http.Header{"Retry-After": {"3"}}, "slow down")
	var ra *RetryAfterError
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &ra) || ra.After != 3*time.Second {
		t.Errorf("429 with Retry-After: %v, want ErrRateLimited with a RetryAfterError of 3s", err)
	}
	if got, want := err.Error(), "http 429: slow down: rate limited (retry after 3s)"; got != want {
		t.Errorf("429 with Retry-After reads %q, want %q", got, want)
	}
	err = answerError(quayAPIv1, http.MethodDelete, http.StatusBadGateway, nil, "upstream")
	if got, want := err.Error(), "http 502: upstream"; got != want || errors.Unwrap(err) != nil {
		t.Errorf("502 reads %q (unwraps to %v), want %q wrapping nothing", got, errors.Unwrap(err), want)
	}
}
