package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tagsweep/tagsweep/proto"
)

// maxManifest bounds a manifest body, as registries do (distribution: 4 MiB).
const maxManifest = 4 << 20

// ServeHTTP serves the registry API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	rec := &recorder{ResponseWriter: w}
	kind := r.serve(rec, req)
	if rec.hijacked {
		rec.status = StatusReset
	}
	r.stats.record(kind, rec.status)
	r.log.Debug("request", "method", req.Method, "path", req.URL.Path, "kind", string(kind), "status", rec.status)
}

// serve routes one request and returns its kind for the counters. Order: latency, injected
// faults, authentication, then the endpoint.
func (r *Registry) serve(w *recorder, req *http.Request) Kind {
	kind, name, rest := route(req)
	if d := r.cfg.Latency; d > 0 && !sleep(req, d) {
		return kind // status 0: the client went away
	}
	fr := FaultRequest{Kind: kind, Method: req.Method, Repo: name, Ref: rest, Client: clientIP(req)}
	if kind == KindList {
		fr.Ref = req.URL.Query().Get("last")
		fr.N, _ = strconv.Atoi(req.URL.Query().Get("n"))
	}
	if r.inject(w, req, fr) || !r.authorize(w, req, kind, name) {
		return kind
	}
	switch kind {
	case KindBase:
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		writeJSON(w, http.StatusOK, struct{}{})
	case KindAuth:
		r.serveAuth(w, req)
	case KindList:
		r.serveList(w, req, name)
	case KindDelete, KindDeleteDigest:
		r.serveDelete(w, kind, name, rest)
	case KindManifestGet, KindManifestHead:
		r.serveManifestGet(w, req, name, rest)
	case KindManifestPut:
		r.serveManifestPut(w, req, name, rest)
	case KindBlob:
		r.serveBlob(w, req, rest)
	case KindBlobUpload:
		r.serveUpload(w, req, name, rest)
	case KindAPIList, KindAPIDelete, KindAPIPut, KindAPIRestore:
		r.serveAPI(w, req, kind, name, rest)
	default:
		if rest == "method" {
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed", nil)
		} else {
			writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint", nil)
		}
	}
	return kind
}

// InFlight is the number of requests being served, latency included.
func (r *Registry) InFlight() int64 { return r.inflight.Load() }

// route classifies a request. name is the repository, rest the reference, digest or upload
// ID that follows the endpoint. For KindOther, rest is "method" when the path exists but the
// method does not.
func route(req *http.Request) (kind Kind, name, rest string) {
	p := req.URL.Path
	if api, ok := strings.CutPrefix(p, "/api/v1/repository/"); ok {
		return routeAPI(req.Method, api)
	}
	if p == "/v2/auth" {
		if req.Method == http.MethodGet {
			return KindAuth, "", ""
		}
		return KindOther, "", "method"
	}
	if p == "/v2/" || p == "/v2" {
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			return KindBase, "", ""
		}
		return KindOther, "", "method"
	}
	p, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return KindOther, "", ""
	}
	if n, ok := strings.CutSuffix(p, "/tags/list"); ok {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			return KindOther, "", "method"
		}
		return KindList, n, ""
	}
	if i := strings.LastIndex(p, "/manifests/"); i > 0 {
		name, ref := p[:i], p[i+len("/manifests/"):]
		switch req.Method {
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
	if i := strings.LastIndex(p, "/blobs/uploads"); i > 0 {
		return KindBlobUpload, p[:i], strings.TrimPrefix(p[i+len("/blobs/uploads"):], "/")
	}
	if i := strings.LastIndex(p, "/blobs/"); i > 0 {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			return KindOther, "", "method"
		}
		return KindBlob, p[:i], p[i+len("/blobs/"):]
	}
	return KindOther, "", ""
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

// ociError is one entry of the OCI error body.
type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string, detail any) {
	writeJSON(w, status, struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{Code: code, Message: msg, Detail: detail}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the sim's own types reach here; they always marshal.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func nameUnknown(w http.ResponseWriter, name string) {
	writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry", map[string]string{"name": name})
}

// lookupRepo answers NAME_INVALID or NAME_UNKNOWN itself and returns nil when the request
// names no existing repository.
func (r *Registry) lookupRepo(w http.ResponseWriter, name string) *repo {
	if !repoRE.MatchString(name) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name", map[string]string{"name": name})
		return nil
	}
	rp := r.repo(name, false)
	if rp == nil {
		nameUnknown(w, name)
	}
	return rp
}

// tagList is the tags/list body. Tags is never null: Quay sends [] on an empty page.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// serveList answers tags/list as Quay >= 3.12 does: n clamped to the page cap (a missing or
// non-integer n means the cap, a negative one 0), last exclusive and any string, byte order,
// an absolute Link only when more tags exist.
func (r *Registry) serveList(w http.ResponseWriter, req *http.Request, name string) {
	rp := r.lookupRepo(w, name)
	if rp == nil {
		return
	}
	q := req.URL.Query()
	limit := r.cfg.pageCap()
	if s := q.Get("n"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			limit = max(min(n, limit), 0)
		}
	}
	last := strings.TrimSpace(q.Get("last"))
	tags, more, ok := r.cache.get(name, last, limit, r.now())
	if !ok {
		tags = make([]string, 0, limit)
		if limit > 0 {
			var buf [128]entry
			rp.mu.RLock()
			page, m := rp.tags.after(buf[:0], last, limit)
			rp.mu.RUnlock()
			more = m
			for _, e := range page {
				tags = append(tags, e.name)
			}
		}
		if ttl := r.cfg.ListCacheTTL; ttl > 0 {
			r.cache.put(name, last, limit, tags, more, r.now(), ttl)
		}
	}
	if more {
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		next := url.URL{
			Scheme:   scheme,
			Host:     req.Host,
			Path:     "/v2/" + name + "/tags/list",
			RawQuery: "n=" + strconv.Itoa(limit) + "&last=" + url.QueryEscape(tags[len(tags)-1]),
		}
		w.Header().Set("Link", "<"+next.String()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, tagList{Name: name, Tags: tags})
}

func (r *Registry) serveDelete(w http.ResponseWriter, kind Kind, name, ref string) {
	rp := r.lookupRepo(w, name)
	if rp == nil {
		return
	}
	if kind == KindDeleteDigest {
		if !digestRE.MatchString(ref) {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest", map[string]string{"digest": ref})
			return
		}
		removed, ok := rp.deleteDigest(ref, r.now().UnixMilli())
		if !ok {
			writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", map[string]string{"digest": ref})
			return
		}
		r.stats.add(func(s *Stats) {
			s.DigestDeletes++
			s.DigestDeletedTags += int64(len(removed))
		})
		r.log.Debug("deleted by digest", "repo", name, "digest", ref, "tags", len(removed))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if !proto.ValidTag(ref) {
		writeError(w, http.StatusBadRequest, "TAG_INVALID", "invalid tag", map[string]string{"tag": ref})
		return
	}
	if !rp.deleteTag(ref, r.now().UnixMilli()) {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", map[string]string{"tag": ref})
		return
	}
	r.stats.add(func(s *Stats) { s.TagDeletes++ })
	w.WriteHeader(http.StatusAccepted)
}

// resolve returns the digest ref names in rp: a tag's target, or a digest the repository
// holds.
func (rp *repo) resolve(ref string) (string, bool) {
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	if digestRE.MatchString(ref) {
		return ref, rp.known[ref]
	}
	e, ok := rp.tags.get(ref)
	if !ok {
		return "", false
	}
	return rp.digests[e.man], true
}

// serveManifestGet answers GET and HEAD of a manifest. Accept is honoured loosely: the stored
// manifest is returned whatever the client asked for (no conversion, no 404 for a missing
// media type as distribution does).
func (r *Registry) serveManifestGet(w http.ResponseWriter, req *http.Request, name, ref string) {
	rp := r.lookupRepo(w, name)
	if rp == nil {
		return
	}
	d, ok := rp.resolve(ref)
	var m *manifest
	if ok {
		m, ok = r.getManifest(d)
	}
	if !ok {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", map[string]string{"reference": ref})
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.mediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.body)))
	h.Set("Docker-Content-Digest", d)
	h.Set("ETag", `"`+d+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(m.body)
	}
}

// serveManifestPut stores a manifest by tag or digest. Referenced blobs are not checked.
func (r *Registry) serveManifestPut(w http.ResponseWriter, req *http.Request, name, ref string) {
	if !repoRE.MatchString(name) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name", map[string]string{"name": name})
		return
	}
	isDigest := strings.Contains(ref, ":")
	if (isDigest && !digestRE.MatchString(ref)) || (!isDigest && !proto.ValidTag(ref)) {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "invalid reference", map[string]string{"reference": ref})
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifest+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "reading manifest: "+err.Error(), nil)
		return
	}
	if len(body) > maxManifest {
		writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large", nil)
		return
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest is not JSON", nil)
		return
	}
	mt := req.Header.Get("Content-Type")
	if mt == "" {
		mt = probe.MediaType
	}
	if mt == "" {
		mt = MediaTypeOCIManifest
	}
	d := Digest(body)
	if isDigest && d != ref {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest does not match body", map[string]string{"digest": ref})
		return
	}
	d, _ = r.PutManifest(name, mt, body)
	if !isDigest {
		r.repo(name, true).putTag(ref, d, r.now().UnixMilli())
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", d)
	h.Set("Location", "/v2/"+name+"/manifests/"+d)
	w.WriteHeader(http.StatusCreated)
}

// serveBlob answers GET and HEAD of a blob. Blobs are shared by every repository.
func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, d string) {
	r.content.RLock()
	b, ok := r.blobs[d]
	r.content.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown", map[string]string{"digest": d})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Docker-Content-Digest", d)
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(b)
	}
}

// serveUpload implements monolithic and chunked blob uploads and cross-repository mounts.
func (r *Registry) serveUpload(w http.ResponseWriter, req *http.Request, name, id string) {
	if !repoRE.MatchString(name) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name", map[string]string{"name": name})
		return
	}
	q := req.URL.Query()
	if id == "" {
		if req.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed", nil)
			return
		}
		if d := q.Get("mount"); d != "" {
			r.content.RLock()
			_, ok := r.blobs[d]
			r.content.RUnlock()
			if ok {
				r.repo(name, true)
				w.Header().Set("Location", "/v2/"+name+"/blobs/"+d)
				w.Header().Set("Docker-Content-Digest", d)
				w.WriteHeader(http.StatusCreated)
				return
			}
		}
		if d := q.Get("digest"); d != "" { // monolithic POST
			r.finishUpload(w, req, name, d, nil)
			return
		}
		id = strconv.FormatUint(r.uploadSeq.Add(1), 16)
		r.content.Lock()
		r.uploads[id] = &upload{repo: name}
		r.content.Unlock()
		uploadAccepted(w, name, id, 0)
		return
	}
	r.content.Lock()
	up, ok := r.uploads[id]
	if ok && up.repo != name {
		ok = false
	}
	r.content.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown", map[string]string{"upload": id})
		return
	}
	switch req.Method {
	case http.MethodGet:
		r.content.RLock()
		n := len(up.data)
		r.content.RUnlock()
		w.Header().Set("Docker-Upload-UUID", id)
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(n-1, 0)))
		w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		b, err := io.ReadAll(req.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "reading chunk: "+err.Error(), nil)
			return
		}
		r.content.Lock()
		up.data = append(up.data, b...)
		n := len(up.data)
		r.content.Unlock()
		uploadAccepted(w, name, id, n)
	case http.MethodPut:
		r.content.Lock()
		prefix := up.data
		delete(r.uploads, id)
		r.content.Unlock()
		r.finishUpload(w, req, name, q.Get("digest"), prefix)
	case http.MethodDelete:
		r.content.Lock()
		delete(r.uploads, id)
		r.content.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed", nil)
	}
}

func uploadAccepted(w http.ResponseWriter, name, id string, n int) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", fmt.Sprintf("0-%d", max(n-1, 0)))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// finishUpload stores prefix plus the request body as the blob d, checking the digest.
func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, name, d string, prefix []byte) {
	if !digestRE.MatchString(d) {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "missing or invalid digest", map[string]string{"digest": d})
		return
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "reading blob: "+err.Error(), nil)
		return
	}
	data := append(prefix, b...)
	if Digest(data) != d {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest does not match content", map[string]string{"digest": d})
		return
	}
	r.PutBlob(data)
	r.repo(name, true)
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+d)
	h.Set("Docker-Content-Digest", d)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// recorder captures the status written. Unwrap lets http.ResponseController reach the
// underlying writer (flush, hijack).
type recorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// Hijack lets fault injection close the connection without answering.
func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(rec.ResponseWriter).Hijack()
	rec.hijacked = err == nil
	return c, rw, err
}
