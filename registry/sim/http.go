package sim

import (
	"bufio"
	"encoding/json"
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
	if !proto.ValidRepository(name) {
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
		if !proto.ValidDigest(ref) {
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
	if proto.ValidDigest(ref) {
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
	if !proto.ValidRepository(name) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name", map[string]string{"name": name})
		return
	}
	isDigest := strings.Contains(ref, ":")
	if (isDigest && !proto.ValidDigest(ref)) || (!isDigest && !proto.ValidTag(ref)) {
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
