package sim

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/tagsweep/tagsweep/proto"
)

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
	if !proto.ValidRepository(name) {
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
	if !proto.ValidDigest(d) {
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
