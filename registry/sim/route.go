package sim

import (
	"net/http"
	"strings"
)

// route classifies a request. name is the repository, rest the reference, digest or upload
// ID that follows the endpoint. For KindOther, rest is "method" when the path exists but the
// method does not.
func route(req *http.Request) (kind Kind, name, rest string) {
	p, m := req.URL.Path, req.Method
	if api, ok := strings.CutPrefix(p, "/api/v1/repository/"); ok {
		return routeAPI(m, api)
	}
	switch p {
	case "/v2/auth":
		return only(KindAuth, m == http.MethodGet)
	case "/v2/", "/v2":
		return only(KindBase, m == http.MethodGet || m == http.MethodHead)
	}
	if p, ok := strings.CutPrefix(p, "/v2/"); ok {
		return routeRepo(m, p)
	}
	return KindOther, "", ""
}

// only is kind when the method fits the path, else KindOther with rest "method".
func only(kind Kind, methodFits bool) (Kind, string, string) {
	if !methodFits {
		return KindOther, "", "method"
	}
	return kind, "", ""
}

// routeRepo classifies a /v2/<name>/... path (without its /v2/).
func routeRepo(method, p string) (Kind, string, string) {
	read := method == http.MethodGet || method == http.MethodHead
	if n, ok := strings.CutSuffix(p, "/tags/list"); ok {
		if !read {
			return KindOther, "", "method"
		}
		return KindList, n, ""
	}
	if i := strings.LastIndex(p, "/manifests/"); i > 0 {
		return routeManifest(method, p[:i], p[i+len("/manifests/"):])
	}
	if i := strings.LastIndex(p, "/blobs/uploads"); i > 0 {
		return KindBlobUpload, p[:i], strings.TrimPrefix(p[i+len("/blobs/uploads"):], "/")
	}
	if i := strings.LastIndex(p, "/blobs/"); i > 0 {
		if !read {
			return KindOther, "", "method"
		}
		return KindBlob, p[:i], p[i+len("/blobs/"):]
	}
	return KindOther, "", ""
}

// routeManifest classifies a request of /v2/<name>/manifests/<ref>.
func routeManifest(method, name, ref string) (Kind, string, string) {
	switch method {
	case http.MethodGet:
		return KindManifestGet, name, ref
	case http.MethodHead:
		return KindManifestHead, name, ref
	case http.MethodPut:
		return KindManifestPut, name, ref
	case http.MethodDelete:
		if strings.Contains(ref, ":") {
			return KindDeleteDigest, name, ref
		}
		return KindDelete, name, ref
	}
	return KindOther, "", "method"
}

// routeAPI classifies /api/v1/repository/<ns>/<repo>/tag/[<tag>].
func routeAPI(method, p string) (Kind, string, string) {
	i := strings.LastIndex(p, "/tag/")
	if i <= 0 {
		return KindOther, "", ""
	}
	name, tag := p[:i], p[i+len("/tag/"):]
	if t, ok := strings.CutSuffix(tag, "/restore"); ok && t != "" && !strings.Contains(t, "/") {
		if method == http.MethodPost {
			return KindAPIRestore, name, t
		}
		return KindOther, "", "method"
	}
	switch {
	case tag == "" && method == http.MethodGet:
		return KindAPIList, name, ""
	case tag != "" && method == http.MethodDelete:
		return KindAPIDelete, name, tag
	case tag != "" && method == http.MethodPut:
		return KindAPIPut, name, tag
	}
	return KindOther, "", "method"
}
