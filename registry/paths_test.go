package registry

import (
	"regexp"
	"testing"
)

// The guards' path checks are the regexps below written out; these are the oracle.
var (
	apiRE      = regexp.MustCompile(`^/v2/.+/(?:tags/list|manifests/|blobs/|referrers/)`)
	manifestRE = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	blobRE     = regexp.MustCompile(`^/v2/.+/blobs/sha256:[a-f0-9]{64}$`)
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// FuzzGuardPaths: registryAPIPath, manifestPath and blobPath agree with the regexps they
// replace on every path.
func FuzzGuardPaths(f *testing.F) {
	for _, p := range []string{
		"/v2/", "/v2/auth", "/v2/a/tags/list", "/v2//tags/list", "/v2/a/b/manifests/latest", "/v2/a/manifests/",
		"/v2/a/manifests/x/y", "/v2/a/manifests/manifests/x", "/v2/a\n/manifests/x", "/v2/a/manifests/x\n",
		"/v2/\n/blobs/", "/v2/a/blobs/sha256:" + hex64, "/v2/a/blobs/sha256:" + hex64 + "0",
		"/v2//blobs/sha256:" + hex64, "/v2/a/blobs/sha256:" + hex64[:63] + "G", "/v2/a/referrers/sha256:x",
		"/v2//manifests//manifests/x", "/v3/a/manifests/x", "/v2/a/tags/listing", "/token",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if got, want := registryAPIPath(p), apiRE.MatchString(p); got != want {
			t.Errorf("registryAPIPath(%q) = %v, the regexp says %v", p, got, want)
		}
		name, ref, ok := manifestPath(p)
		m := manifestRE.FindStringSubmatch(p)
		if ok != (m != nil) || (ok && (name != m[1] || ref != m[2])) {
			t.Errorf("manifestPath(%q) = %q, %q, %v; the regexp says %q", p, name, ref, ok, m)
		}
		if got, want := blobPath(p), blobRE.MatchString(p); got != want {
			t.Errorf("blobPath(%q) = %v, the regexp says %v", p, got, want)
		}
	})
}
