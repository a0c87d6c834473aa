package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// send makes a request with optional headers and returns the status, headers and body.
func send(t *testing.T, method, u string, body io.Reader, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestTokenAuth(t *testing.T) {
	clk := newClock()
	s := startSim(t, Config{Now: clk.Now, Auth: &Auth{Users: map[string]string{"ns+robot": "pw"}, TokenLifetime: time.Minute, Service: "quay.test"}})
	if err := s.AddTags("ns/app", "", "a", "b"); err != nil {
		t.Fatal(err)
	}
	token := func(user, pass, scope string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/v2/auth?service=quay.test&scope="+scope, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode == http.StatusOK && len(body) != 1 {
			t.Errorf("token reply %v, want only \"token\" as Quay sends", body)
		}
		tok, _ := body["token"].(string)
		return resp.StatusCode, tok
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	realm := `Bearer realm="` + s.URL() + `/v2/auth",service="quay.test"`

	code, hdr, _ := send(t, http.MethodGet, s.URL()+"/v2/", nil, nil)
	if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != realm {
		t.Errorf("GET /v2/ = %d %q, want 401 %q", code, hdr.Get("WWW-Authenticate"), realm)
	}
	code, hdr, _ = send(t, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil, nil)
	if want := realm + `,scope="repository:ns/app:pull"`; code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != want {
		t.Errorf("list without token = %d %q, want 401 %q", code, hdr.Get("WWW-Authenticate"), want)
	}
	if code, _ := token("ns+robot", "wrong", "repository:ns/app:pull"); code != http.StatusUnauthorized {
		t.Errorf("token with a wrong password = %d, want 401", code)
	}
	code, pull := token("ns+robot", "pw", "repository:ns/app:pull")
	if code != http.StatusOK || pull == "" {
		t.Fatalf("token = %d %q, want 200 and a token", code, pull)
	}
	if code, _, _ := send(t, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil, bearer(pull)); code != http.StatusOK {
		t.Errorf("list with pull token = %d, want 200", code)
	}
	code, hdr, _ = send(t, http.MethodDelete, s.URL()+"/v2/ns/app/manifests/a", nil, bearer(pull))
	if want := realm + `,scope="repository:ns/app:push,pull"`; code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != want {
		t.Errorf("delete with pull token = %d %q, want 401 %q", code, hdr.Get("WWW-Authenticate"), want)
	}
	_, push := token("ns+robot", "pw", "repository:ns/app:pull,push")
	if code, _, _ := send(t, http.MethodDelete, s.URL()+"/v2/ns/app/manifests/a", nil, bearer(push)); code != http.StatusAccepted {
		t.Errorf("delete with push token = %d, want 202", code)
	}
	if code, _, _ := send(t, http.MethodGet, s.URL()+"/v2/other/app/tags/list", nil, bearer(push)); code != http.StatusUnauthorized {
		t.Errorf("list of another repository = %d, want 401", code)
	}

	clk.Advance(time.Minute)
	code, hdr, _ = send(t, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil, bearer(pull))
	if code != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("list with expired token = %d %q, want 401 invalid_token", code, hdr.Get("WWW-Authenticate"))
	}
	_, fresh := token("ns+robot", "pw", "repository:ns/app:pull")
	s.ExpireTokens()
	if code, _, _ := send(t, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil, bearer(fresh)); code != http.StatusUnauthorized {
		t.Errorf("list after ExpireTokens = %d, want 401", code)
	}
	if got := s.Stats().TokensIssued; got != 3 {
		t.Errorf("TokensIssued = %d, want 3", got)
	}
}

// TestTokenRequests: a token is good for Auth.TokenRequests requests, then refused as
// expired, whatever the time.
func TestTokenRequests(t *testing.T) {
	s := startSim(t, Config{Auth: &Auth{TokenRequests: 3}})
	if err := s.AddTags("ns/app", "", "a"); err != nil {
		t.Fatal(err)
	}
	_, _, body := send(t, http.MethodGet, s.URL()+"/v2/auth?scope=repository:ns/app:pull", nil, nil)
	var reply struct{ Token string }
	if err := json.Unmarshal(body, &reply); err != nil || reply.Token == "" {
		t.Fatalf("token reply %q: %v", body, err)
	}
	hdr := map[string]string{"Authorization": "Bearer " + reply.Token}
	for i := range 3 {
		if code, _, _ := send(t, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil, hdr); code != http.StatusOK {
			t.Fatalf("request %d = %d, want 200", i+1, code)
		}
	}
	code, h, _ := send(t, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil, hdr)
	if code != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("fourth request = %d %q, want 401 invalid_token", code, h.Get("WWW-Authenticate"))
	}
	if n := s.Stats().TokensRefused; n != 1 {
		t.Errorf("TokensRefused = %d, want 1", n)
	}
}

// TestTokenAuthWithRegclient checks the challenge is one a real client follows.
func TestTokenAuthWithRegclient(t *testing.T) {
	s := startSim(t, Config{Auth: &Auth{Users: map[string]string{"ns+robot": "pw"}}})
	if err := s.AddTags("ns/app", "", "a", "b"); err != nil {
		t.Fatal(err)
	}
	rc := regclient.New(regclient.WithConfigHost(config.Host{Name: s.Addr(), TLS: config.TLSDisabled, User: "ns+robot", Pass: "pw"}))
	r, err := ref.New(s.Addr() + "/ns/app:a")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := rc.TagList(t.Context(), r)
	if err != nil {
		t.Fatalf("TagList: %v", err)
	}
	if tags, _ := tl.GetTags(); !slices.Equal(tags, []string{"a", "b"}) {
		t.Errorf("TagList = %v, want [a b]", tags)
	}
	if err := rc.TagDelete(t.Context(), r); err != nil {
		t.Fatalf("TagDelete: %v", err)
	}
	if s.HasTag("ns/app", "a") {
		t.Error("tag a survived TagDelete")
	}
}

type apiList struct {
	Tags          []apiTag `json:"tags"`
	Page          int      `json:"page"`
	HasAdditional bool     `json:"has_additional"`
}

func TestAPIv1(t *testing.T) {
	clk := newClock()
	s := startSim(t, Config{Now: clk.Now, APIToken: "oauth"})
	auth := map[string]string{"Authorization": "Bearer oauth"}
	if err := s.AddTags("ns/app", "", "old_b", "old_a", "x_y", "xzy", "XAY"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := s.AddTags("ns/app", "", "new"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	base := s.URL() + "/api/v1/repository/ns/app/tag/"
	if code, _, _ := send(t, http.MethodDelete, base+"old_b", nil, auth); code != http.StatusNoContent {
		t.Fatalf("DELETE old_b = %d, want 204", code)
	}

	list := func(query string) apiList {
		t.Helper()
		code, _, b := send(t, http.MethodGet, base+query, nil, auth)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", query, code, b)
		}
		var l apiList
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	namesOf := func(l apiList) []string {
		var out []string
		for _, tg := range l.Tags {
			out = append(out, tg.Name)
		}
		return out
	}
	tests := []struct {
		query    string
		want     []string
		wantMore bool
	}{
		{"?onlyActiveTags=true", []string{"new", "XAY", "old_a", "x_y", "xzy"}, false},
		{"?onlyActiveTags=true&limit=2", []string{"new", "XAY"}, true},
		{"?onlyActiveTags=true&limit=2&page=3", []string{"xzy"}, false},
		{"?onlyActiveTags=true&limit=0", []string{"new"}, true},
		{"?onlyActiveTags=true&limit=1000", []string{"new", "XAY", "old_a", "x_y", "xzy"}, false},
		{"?onlyActiveTags=true&filter_tag_name=like:x_y", []string{"XAY", "x_y", "xzy"}, false}, // _ is a wildcard, case-insensitive
		{"?onlyActiveTags=true&filter_tag_name=like:ld_", []string{"old_a"}, false},             // substring, not prefix
		{"?onlyActiveTags=true&filter_tag_name=eq:x_y", []string{"x_y"}, false},
		{"?onlyActiveTags=true&filter_tag_name=foo:bar", []string{"new", "XAY", "old_a", "x_y", "xzy"}, false}, // unknown op ignored
		{"?onlyActiveTags=true&specificTag=old_a", []string{"old_a"}, false},
		{"?onlyActiveTags=false&specificTag=old_b", []string{"old_b"}, false},
		{"", []string{"new", "XAY", "old_a", "old_b", "x_y", "xzy"}, false}, // dead rows included by default
	}
	for _, tc := range tests {
		l := list(tc.query)
		if got := namesOf(l); !slices.Equal(got, tc.want) || l.HasAdditional != tc.wantMore {
			t.Errorf("GET %s = %v more=%v, want %v more=%v", tc.query, got, l.HasAdditional, tc.want, tc.wantMore)
		}
	}
	dead := list("?specificTag=old_b").Tags[0]
	if dead.EndTS != clk.Now().Unix() || dead.Expiration == "" || dead.ManifestDigest != s.DefaultDigest() {
		t.Errorf("dead row %+v, want end_ts %d, an expiration and the default digest", dead, clk.Now().Unix())
	}
	if got := list("?specificTag=new").Tags[0].LastModified; got != "Fri, 20 Nov 2026 12:01:00 -0000" {
		t.Errorf("last_modified = %q, want RFC 2822", got)
	}

	if code, _, _ := send(t, http.MethodGet, base+"?filter_tag_name=nocolon", nil, auth); code != http.StatusBadRequest {
		t.Errorf("filter without op = %d, want 400", code)
	}
	if code, _, _ := send(t, http.MethodGet, base, nil, nil); code != http.StatusUnauthorized {
		t.Errorf("without OAuth token = %d, want 401", code)
	}
	if code, _, _ := send(t, http.MethodDelete, base+"old_b", nil, auth); code != http.StatusNotFound {
		t.Errorf("second DELETE = %d, want 404", code)
	}
	put := func(tag, digest string) int {
		code, _, _ := send(t, http.MethodPut, base+tag, strings.NewReader(`{"manifest_digest":"`+digest+`"}`), auth)
		return code
	}
	if code := put("copy", s.DefaultDigest()); code != http.StatusCreated {
		t.Errorf("PUT copy = %d, want 201", code)
	}
	if d, _ := s.TagDigest("ns/app", "copy"); d != s.DefaultDigest() {
		t.Errorf("copy points at %q", d)
	}
	if code := put("bad", "sha256:"+strings.Repeat("1", 64)); code != http.StatusNotFound {
		t.Errorf("PUT with an unknown manifest = %d, want 404", code)
	}
	if code, _, _ := send(t, http.MethodGet, s.URL()+"/api/v1/repository/ns/nope/tag/", nil, auth); code != http.StatusNotFound {
		t.Errorf("unknown repository = %d, want 404", code)
	}
	st := s.Stats()
	if st.Requests[KindAPIDelete] != 2 || st.Requests[KindAPIPut] != 2 || st.TagDeletes != 1 {
		t.Errorf("api_delete, api_put, TagDeletes = %d, %d, %d, want 2, 2, 1", st.Requests[KindAPIDelete], st.Requests[KindAPIPut], st.TagDeletes)
	}
}

func TestListCacheIgnoresDeletes(t *testing.T) {
	clk := newClock()
	s := startSim(t, Config{Now: clk.Now, ListCacheTTL: 120 * time.Second})
	if err := s.AddTags("ns/app", "", "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s.URL(), "ns/app", "?n=10").body.Tags; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("first list = %v", got)
	}
	if code := do(t, http.MethodDelete, s.URL()+"/v2/ns/app/manifests/b"); code != http.StatusAccepted {
		t.Fatalf("DELETE = %d", code)
	}
	if got := list(t, s.URL(), "ns/app", "?n=10").body.Tags; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("cached list after delete = %v, want the stale [a b c]", got)
	}
	if got := list(t, s.URL(), "ns/app", "?n=9").body.Tags; !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("list with another n = %v, want fresh [a c]", got)
	}
	clk.Advance(120 * time.Second)
	if got := list(t, s.URL(), "ns/app", "?n=10").body.Tags; !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("list after TTL = %v, want fresh [a c]", got)
	}
}
