package sim

import (
	"sync"
	"time"
)

// listCache is Quay's tags/list page cache: pages keyed by (repository, last, n), kept for
// a TTL and, as in every released Quay, not invalidated by deletes or pushes.
type listCache struct {
	mu    sync.Mutex
	pages map[cacheKey]cachedPage
}

type cacheKey struct {
	repo, last string
	n          int
}

type cachedPage struct {
	tags    []string
	more    bool
	expires time.Time
}

// get returns a live cached page.
func (c *listCache) get(repo, last string, n int, now time.Time) ([]string, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pages[cacheKey{repo, last, n}]
	if !ok || !now.Before(p.expires) {
		return nil, false, false
	}
	return p.tags, p.more, true
}

// put caches a page until now+ttl. When the cache grows large it drops expired pages, and
// everything if that is not enough: the sim bounds its memory, Quay's memcached evicts too.
func (c *listCache) put(repo, last string, n int, tags []string, more bool, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pages == nil {
		c.pages = make(map[cacheKey]cachedPage)
	}
	if len(c.pages) >= 1<<16 {
		for k, p := range c.pages {
			if !now.Before(p.expires) {
				delete(c.pages, k)
			}
		}
		if len(c.pages) >= 1<<16 {
			clear(c.pages)
		}
	}
	c.pages[cacheKey{repo, last, n}] = cachedPage{tags: tags, more: more, expires: now.Add(ttl)}
}

// FlushListCache empties the tags/list page cache.
func (r *Registry) FlushListCache() {
	r.cache.mu.Lock()
	defer r.cache.mu.Unlock()
	clear(r.cache.pages)
}
