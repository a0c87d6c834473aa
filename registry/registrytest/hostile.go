package registrytest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ListRequest is a tags/list request as a Hostile registry received it.
type ListRequest struct {
	Repo string
	Last string // the last= parameter; "" for the first page
	N    int    // the n= parameter; 0 when absent
}

// Hostile configures a registry that misbehaves in front of a well-behaved one.
type Hostile struct {
	// List, if set, rewrites every successful tags/list answer: it is given the request,
	// the tags the upstream answered and whether the upstream sent Link rel="next", and
	// returns the tags to send and whether to send such a Link. It may be called
	// concurrently.
	List func(req ListRequest, tags []string, link bool) ([]string, bool)
	// Date, if set, is sent as the Date header of every answer instead of the real time.
	Date time.Time
	// Hold, if set, is asked about every tags/list request; one it returns true for gets no
	// answer until the client gives up. It may be called concurrently.
	Hold func(req ListRequest) bool
}

// StartHostile starts a registry that passes every request through to upstream (host:port,
// plain HTTP) and misbehaves as h says. It returns its host:port.
func StartHostile(t testing.TB, upstream string, h Hostile) string {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: upstream}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = nil
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !h.Date.IsZero() {
			resp.Header.Set("Date", h.Date.UTC().Format(http.TimeFormat))
		}
		m := tagsListRE.FindStringSubmatch(resp.Request.URL.Path)
		if h.List == nil || m == nil || resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		var page struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		q := resp.Request.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		req := ListRequest{Repo: m[1], Last: q.Get("last"), N: n}
		tags, link := h.List(req, page.Tags, hasNext(resp.Header.Values("Link")))
		resp.Header.Del("Link")
		if link {
			next := "/v2/" + req.Repo + "/tags/list?n=" + strconv.Itoa(n)
			if len(tags) > 0 {
				next += "&last=" + url.QueryEscape(tags[len(tags)-1])
			}
			resp.Header.Set("Link", "<"+next+`>; rel="next"`)
		}
		page.Tags = tags
		out, err := json.Marshal(page)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := tagsListRE.FindStringSubmatch(r.URL.Path); h.Hold != nil && m != nil {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			if h.Hold(ListRequest{Repo: m[1], Last: r.URL.Query().Get("last"), N: n}) {
				<-r.Context().Done()
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// hasNext reports whether Link header values hold rel="next" (loosely: for tests).
func hasNext(values []string) bool {
	for _, v := range values {
		if strings.Contains(strings.ToLower(v), `rel="next"`) {
			return true
		}
	}
	return false
}
