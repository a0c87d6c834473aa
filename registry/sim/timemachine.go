package sim

import (
	"net/http"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Quay's time machine and a registry's garbage collector.
//
// A deleted tag leaves a row (repo.deleted). Within Config.TimeMachine of its deletion the row
// shows in API v1's history, the tag can be restored through API v1 at the row's manifest,
// and the row keeps that manifest from GC. GC drops, from every repository, each manifest
// that no live tag and no such row points at: a GET of it by digest answers 404 afterwards.

// DefaultTimeMachine is Quay's default time machine window (removed_tag_expiration_s).
const DefaultTimeMachine = 14 * 24 * time.Hour

// timeMachine is the window of Config.TimeMachine: 0 for none.
func (r *Registry) timeMachine() time.Duration {
	switch w := r.cfg.TimeMachine; {
	case w == 0:
		return DefaultTimeMachine
	case w < 0:
		return 0
	default:
		return w
	}
}

// kept reports whether a row deleted at end (unix ms) is still in the time machine at now.
func (r *Registry) kept(end int64, now time.Time) bool {
	return time.UnixMilli(end).Add(r.timeMachine()).After(now)
}

// retained returns the manifest digests of rp that GC keeps at now: those of live tags and of
// rows still in the time machine. Callers hold rp.mu.
func (r *Registry) retained(rp *repo, now time.Time) map[string]bool {
	ids := make(map[int32]bool)
	rp.tags.each(func(e entry) { ids[e.man] = true })
	for _, d := range rp.deleted {
		if r.kept(d.end, now) {
			ids[d.man] = true
		}
	}
	out := make(map[string]bool, len(ids))
	for id := range ids {
		out[rp.digests[id]] = true
	}
	return out
}

// GC is the registry's garbage collector, run on demand: it drops from every repository each
// manifest that no tag points at and no row in the time machine keeps, and returns how many it
// dropped. Tags pushed later may bring a manifest back (a PUT stores it again).
func (r *Registry) GC() int {
	now := r.now()
	r.mu.RLock()
	repos := make([]*repo, 0, len(r.repos))
	for _, rp := range r.repos {
		repos = append(repos, rp)
	}
	r.mu.RUnlock()
	n := 0
	for _, rp := range repos {
		rp.mu.Lock()
		keep := r.retained(rp, now)
		for d := range rp.known {
			if !keep[d] {
				delete(rp.known, d)
				n++
			}
		}
		rp.mu.Unlock()
	}
	r.stats.add(func(s *Stats) { s.ManifestsCollected += int64(n) })
	return n
}

// restorable reports whether GC keeps manifest d of rp at now and has not dropped it: a row in
// the time machine or a live tag points at it. Callers hold rp.mu.
func (r *Registry) restorable(rp *repo, d string, now time.Time) bool {
	if !rp.known[d] {
		return false
	}
	id, ok := rp.digestIdx[d]
	if !ok {
		return false
	}
	if end, ok := rp.lastEnd[id]; ok && r.kept(end, now) { // the newest row of d is kept longest
		return true
	}
	found := false
	rp.tags.each(func(e entry) { found = found || e.man == id })
	return found
}

// serveAPIRestore answers POST /api/v1/repository/<repo>/tag/<tag>/restore
// {"manifest_digest": d}: the tag points at d again, as Quay's time machine restore does. The
// manifest must still be kept (a live tag or a row in the time machine points at it, and GC
// has not dropped it); otherwise 404.
func (r *Registry) serveAPIRestore(w http.ResponseWriter, req *http.Request, rp *repo, tag string) {
	if !proto.ValidTag(tag) {
		apiError(w, http.StatusBadRequest, "invalid tag name")
		return
	}
	digest, err := readManifestDigest(req)
	if err != nil || !proto.ValidDigest(digest) {
		apiError(w, http.StatusBadRequest, "Missing manifest_digest")
		return
	}
	now := r.now()
	rp.mu.Lock()
	ok := r.restorable(rp, digest, now)
	if ok {
		rp.tags.put(entry{name: tag, man: rp.digestID(digest), start: now.UnixMilli()})
	}
	rp.mu.Unlock()
	if !ok {
		apiError(w, http.StatusNotFound, "manifest not found")
		return
	}
	r.stats.add(func(s *Stats) { s.TagsRestored++ })
	writeJSON(w, http.StatusOK, map[string]any{})
}
