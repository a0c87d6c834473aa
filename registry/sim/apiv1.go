package sim

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Quay API v1 tag endpoints: /api/v1/repository/<ns>/<repo>/tag/[<tag>].

// apiTag is one row of the v1 tag list, with Quay's field names.
type apiTag struct {
	Name           string `json:"name"`
	Reversion      bool   `json:"reversion"`
	StartTS        int64  `json:"start_ts,omitempty"`
	EndTS          int64  `json:"end_ts,omitempty"`
	ManifestDigest string `json:"manifest_digest"`
	IsManifestList bool   `json:"is_manifest_list"`
	Size           *int64 `json:"size"`
	LastModified   string `json:"last_modified,omitempty"`
	Expiration     string `json:"expiration,omitempty"`
}

// rfc2822 is Python's email.utils.formatdate(usegmt=False) layout, which Quay uses.
const rfc2822 = "Mon, 02 Jan 2006 15:04:05 -0000"

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"status": status, "error_message": msg, "detail": msg, "title": http.StatusText(status)})
}

// serveAPI answers the v1 tag endpoints. rest is "" for the list, else the tag.
func (r *Registry) serveAPI(w http.ResponseWriter, req *http.Request, kind Kind, name, tag string) {
	if want := r.cfg.APIToken; want != "" && req.Header.Get("Authorization") != "Bearer "+want {
		apiError(w, http.StatusUnauthorized, "invalid or missing OAuth token")
		return
	}
	rp := r.repo(name, false)
	if rp == nil || !proto.ValidRepository(name) {
		apiError(w, http.StatusNotFound, "repository not found")
		return
	}
	switch kind {
	case KindAPIRestore:
		r.serveAPIRestore(w, req, rp, tag)
	case KindAPIList:
		r.serveAPIList(w, req, rp)
	case KindAPIDelete:
		if !rp.deleteTag(tag, r.now().UnixMilli()) {
			apiError(w, http.StatusNotFound, "tag not found")
			return
		}
		r.stats.add(func(s *Stats) { s.TagDeletes++ })
		w.WriteHeader(http.StatusNoContent)
	case KindAPIPut:
		if !proto.ValidTag(tag) {
			apiError(w, http.StatusBadRequest, "invalid tag name")
			return
		}
		digest, err := readManifestDigest(req)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid JSON body")
			return
		}
		if digest == "" {
			// Quay also takes expiration and immutable; the sim supports only creating or
			// moving a tag.
			apiError(w, http.StatusBadRequest, "the simulator needs manifest_digest")
			return
		}
		if d, ok := rp.resolve(digest); !ok || d != digest {
			apiError(w, http.StatusNotFound, "manifest not found")
			return
		}
		rp.putTag(tag, digest, r.now().UnixMilli())
		writeJSON(w, http.StatusCreated, "Updated")
	}
}

// serveAPIList lists tags newest push first, by SQL-OFFSET pages, as Quay does. It scans
// the whole repository for every page (Quay's deep pages cost O(offset) too); only
// specificTag is a point lookup.
func (r *Registry) serveAPIList(w http.ResponseWriter, req *http.Request, rp *repo) {
	q, ok := parseAPIList(req.URL.Query())
	if !ok {
		apiError(w, http.StatusBadRequest, "Unsupported syntax for filter_tag_name")
		return
	}
	rows, digests := r.apiRows(rp, q)
	slices.SortFunc(rows, func(a, b deletion) int {
		if c := cmp.Compare(b.start, a.start); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	offset := min(q.limit*(q.page-1), len(rows))
	rows = rows[offset:]
	more := len(rows) > q.limit
	rows = rows[:min(q.limit, len(rows))]
	out := make([]apiTag, 0, len(rows))
	for _, row := range rows {
		out = append(out, r.apiTag(row, digests[row.man]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"tags": out, "page": q.page, "has_additional": more})
}

// apiListQuery is what an API v1 tag list asks for.
type apiListQuery struct {
	page, limit int    // page from 1; limit 1 to 100, 50 when not given
	active      bool   // onlyActiveTags: no deleted rows
	specific    string // specificTag: that tag's rows alone
	match       func(name string) bool
}

// parseAPIList reads a tag list's query; false for a filter_tag_name without an operator.
func parseAPIList(q url.Values) (apiListQuery, bool) {
	l := apiListQuery{limit: 50, active: truthy(q.Get("onlyActiveTags")), specific: q.Get("specificTag"),
		match: func(string) bool { return true }}
	l.page, _ = strconv.Atoi(q.Get("page"))
	l.page = max(l.page, 1)
	if n, err := strconv.Atoi(q.Get("limit")); err == nil {
		l.limit = n
	}
	l.limit = min(100, max(1, l.limit))
	f := q.Get("filter_tag_name")
	if f == "" {
		return l, true
	}
	op, val, ok := strings.Cut(f, ":")
	if !ok {
		return l, false
	}
	switch op {
	case "eq":
		l.match = func(n string) bool { return n == val }
	case "like":
		l.match = likeRE(val).MatchString
	}
	// Any other op is silently ignored, as in Quay.
	return l, true
}

// apiRows returns the rows l asks for, unsorted: live tags (end 0) and, unless l.active,
// deleted ones still in the time machine; and the repository's manifest digests by entry.man.
func (r *Registry) apiRows(rp *repo, l apiListQuery) ([]deletion, []string) {
	var rows []deletion
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	if l.specific != "" {
		if e, ok := rp.tags.get(l.specific); ok && l.match(e.name) {
			rows = append(rows, deletion{entry: e})
		}
	} else {
		rp.tags.each(func(e entry) {
			if l.match(e.name) {
				rows = append(rows, deletion{entry: e})
			}
		})
	}
	if !l.active {
		now := r.now()
		keep := func(d deletion) {
			if l.match(d.name) && r.kept(d.end, now) {
				rows = append(rows, d)
			}
		}
		if l.specific != "" {
			for _, i := range rp.deletedOf[l.specific] {
				keep(rp.deleted[i])
			}
		} else {
			for _, d := range rp.deleted {
				keep(d)
			}
		}
	}
	return rows, rp.digests
}

// apiTag is row as API v1 lists it, pointing at the manifest d.
func (r *Registry) apiTag(row deletion, d string) apiTag {
	t := apiTag{Name: row.name, ManifestDigest: d}
	if m, ok := r.getManifest(d); ok {
		t.IsManifestList = m.mediaType == MediaTypeOCIIndex || m.mediaType == MediaTypeDockerList
	}
	if row.start > 0 {
		t.StartTS = row.start / 1000
		t.LastModified = time.UnixMilli(row.start).UTC().Format(rfc2822)
	}
	if row.end > 0 {
		t.EndTS = row.end / 1000
		t.Expiration = time.UnixMilli(row.end).UTC().Format(rfc2822)
	}
	return t
}

// truthy is Flask-RESTful's boolean parsing, roughly.
func truthy(s string) bool {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		return true
	}
	return false
}

// likeRE is peewee 3.13's Tag.name.contains(v): ILIKE '%v%' with v unescaped, so '_' and
// '%' in v are wildcards and the match is a case-insensitive substring, never a prefix.
func likeRE(v string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?is)")
	for _, c := range v {
		switch c {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return regexp.MustCompile(b.String())
}

// readManifestDigest reads the manifest_digest of an API v1 request's JSON body (at most
// 1 MiB); "" when the body has none.
func readManifestDigest(req *http.Request) (string, error) {
	var body struct {
		ManifestDigest string `json:"manifest_digest"`
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return "", err
	}
	return body.ManifestDigest, nil
}
