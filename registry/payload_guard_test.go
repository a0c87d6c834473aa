package registry

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

// TestPayloadGuard: the preservation client can read manifests and blobs, authenticate, and
// write only preservation-family tags; it can never delete, push blobs or write other tags.
func TestPayloadGuard(t *testing.T) {
	testGuard(t, writableTag, []guardCase{
		{"manifest by tag", "GET", "/v2/openshift/ci/manifests/rc_payload__4.1", true},
		{"manifest by digest", "GET", "/v2/openshift/ci/manifests/" + guardDigest, true},
		{"manifest head", "HEAD", "/v2/openshift/ci/manifests/rc_payload__4.1", true},
		{"blob", "GET", "/v2/openshift/ci/blobs/" + guardDigest, true},
		{"component tag write", "PUT", "/v2/openshift/ci/manifests/rc_payload__4.1__component__cli", true},
		{"marker write", "PUT", "/v2/openshift/ci/manifests/preserved__rc_payload__4.1", true},
		{"Quay token endpoint", "GET", "/v2/auth", true},
		{"token POST elsewhere", "POST", "https://auth.example/token", true},
		{"blob redirect to storage", "GET", "https://storage.example/blobs/abc?sig=x", true},
		{"tag delete", "DELETE", "/v2/openshift/ci/manifests/rc_payload__4.1__component__cli", false},
		{"digest delete", "DELETE", "/v2/openshift/ci/manifests/" + guardDigest, false},
		{"payload tag write", "PUT", "/v2/openshift/ci/manifests/rc_payload__4.1", false},
		{"removal request write", "PUT", "/v2/openshift/ci/manifests/remove__rc_payload__4.1", false},
		{"prune tag write", "PUT", "/v2/openshift/ci/manifests/20200101000000_prune_x", false},
		{"push by digest", "PUT", "/v2/openshift/ci/manifests/" + guardDigest, false},
		{"write on another host", "PUT", "http://other.example/v2/openshift/ci/manifests/preserved__rc_payload__4.1", false},
		{"blob upload", "POST", "/v2/openshift/ci/blobs/uploads/", false},
		{"blob upload chunk", "PATCH", "/v2/openshift/ci/blobs/uploads/1", false},
		{"tags list", "GET", "/v2/openshift/ci/tags/list", false},
		{"referrers", "GET", "/v2/openshift/ci/referrers/" + guardDigest, false},
		{"delete elsewhere", "DELETE", "https://auth.example/token", false},
	})
}

// TestRestorerGuard: the restorer can read manifests and blobs, authenticate, and write any
// tag; it can never delete, write a manifest by digest or push blobs.
func TestRestorerGuard(t *testing.T) {
	testGuard(t, proto.ValidTag, []guardCase{
		{"manifest by tag", "HEAD", "/v2/openshift/ci/manifests/20200101000000_prune_x", true},
		{"manifest by digest", "GET", "/v2/openshift/ci/manifests/" + guardDigest, true},
		{"prune tag write", "PUT", "/v2/openshift/ci/manifests/20200101000000_prune_x", true},
		{"payload tag write", "PUT", "/v2/openshift/ci/manifests/rc_payload__4.1", true},
		{"push by digest", "PUT", "/v2/openshift/ci/manifests/" + guardDigest, false},
		{"invalid tag write", "PUT", "/v2/openshift/ci/manifests/-x", false},
		{"tag delete", "DELETE", "/v2/openshift/ci/manifests/20200101000000_prune_x", false},
		{"digest delete", "DELETE", "/v2/openshift/ci/manifests/" + guardDigest, false},
		{"write on another host", "PUT", "http://other.example/v2/openshift/ci/manifests/x", false},
		{"blob upload", "POST", "/v2/openshift/ci/blobs/uploads/", false},
		{"tags list", "GET", "/v2/openshift/ci/tags/list", false},
	})
}

const guardDigest = "sha256:abababababababababababababababababababababababababababababababab"

type guardCase struct {
	name, method, url string
	allowed           bool
}

// testGuard sends each case through a payloadGuard writing the tags writable accepts.
func testGuard(t *testing.T, writable func(string) bool, tests []guardCase) {
	t.Helper()
	const reg = "registry.example:5000"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingTransport{}
			g := &payloadGuard{base: rt, host: reg, control: NewRateControl(RateControlConfig{}), writable: writable}
			url := tc.url
			if strings.HasPrefix(url, "/") {
				url = "http://" + reg + url
			}
			req, err := http.NewRequestWithContext(t.Context(), tc.method, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := g.RoundTrip(req)
			if resp != nil {
				_ = resp.Body.Close()
			}
			sent := slices.Contains(rt.reqs, tc.method+" "+req.URL.Host+req.URL.Path)
			if sent != tc.allowed || (err == nil) != tc.allowed {
				t.Errorf("%s %s: sent %v, err %v; want allowed %v", tc.method, url, sent, err, tc.allowed)
			}
			if !tc.allowed && !errors.Is(err, errRefused) {
				t.Errorf("refusal %v does not wrap errRefused", err)
			}
		})
	}
}
