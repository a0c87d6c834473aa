package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tagsweep/tagsweep/policy"
)

// baselineConfig is the existing pruner's algorithm pointed at a registry: one sequential
// keyset listing of tags/list pages of 100 (the next page asked for with last=<the page's
// last tag>, more pages only while the answer has a Link rel="next"), each eligible tag's
// DELETE handed to a pool of 100 threads while the listing goes on.
type baselineConfig struct {
	Base       string // http://host:port
	Repo       string
	Rules      *policy.Rules
	PageSize   int           // 100: Quay's cap, and the pruner's n
	Pool       int           // 100: ThreadPoolExecutor(max_workers=100)
	Retries    int           // 5 retries per page
	RetryDelay time.Duration // 60 s: time.sleep(60)
	Client     *http.Client
}

// baselineCounts are the pruner's own counters.
type baselineCounts struct {
	Scanned, Targeted, Deleted, Failed int64
	ListFailed                         bool
}

// runBaseline is the existing pruner's prune phase, reimplemented faithfully:
//   - one sequential keyset lister on the main goroutine: tags/list?n=100, then
//     &last=<last tag of the page>, more pages only while the answer has a Link rel="next"
//     (the URL in it is ignored) and the page is not empty;
//   - any list error is retried after RetryDelay, Retries times per page, then the run aborts;
//   - every listed tag is decided (here with tagsweep's policy, so both sides delete the same
//     tags) and an eligible one is submitted at once to a pool of Pool goroutines through an
//     unbounded queue (ThreadPoolExecutor's), while listing continues;
//   - a delete is one DELETE, never retried; anything but 2xx (404 and 429 included) counts
//     as a failure;
//   - at the end it waits for every submitted delete.
//
// The one deliberate difference: urllib opens a new connection per request; this keeps
// connections alive (a new TCP connection per request would exhaust loopback ports at these
// rates), which only favours the baseline.
func runBaseline(ctx context.Context, cfg baselineConfig) baselineCounts {
	var c baselineCounts
	var deleted, failed atomic.Int64
	q := newQueue()
	var wg sync.WaitGroup
	for range cfg.Pool {
		wg.Go(func() {
			for {
				tag, ok := q.pop()
				if !ok {
					return
				}
				if baselineDelete(ctx, cfg, tag) {
					deleted.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	last := ""
	for {
		tags, more, err := baselineListRetrying(ctx, cfg, last)
		if err != nil {
			c.ListFailed = true
			break
		}
		for _, t := range tags {
			c.Scanned++
			if cfg.Rules.Decide(t).Verdict == policy.Delete {
				c.Targeted++
				q.push(t)
			}
		}
		if !more || len(tags) == 0 {
			break
		}
		last = tags[len(tags)-1]
	}
	q.close()
	wg.Wait()
	c.Deleted, c.Failed = deleted.Load(), failed.Load()
	return c
}

func baselineListRetrying(ctx context.Context, cfg baselineConfig, last string) ([]string, bool, error) {
	for attempt := 0; ; attempt++ {
		tags, more, err := baselineList(ctx, cfg, last)
		if err == nil || attempt >= cfg.Retries || ctx.Err() != nil {
			return tags, more, err
		}
		select { // "Retrying in 1 minute.."
		case <-time.After(cfg.RetryDelay):
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

func baselineList(ctx context.Context, cfg baselineConfig, last string) ([]string, bool, error) {
	u := fmt.Sprintf("%s/v2/%s/tags/list?n=%d", cfg.Base, cfg.Repo, cfg.PageSize)
	if last != "" {
		u += "&last=" + url.QueryEscape(last)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, false, fmt.Errorf("tags/list: http %d", resp.StatusCode)
	}
	var body struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, false, fmt.Errorf("tags/list: %w", err)
	}
	more := false
	for _, l := range resp.Header.Values("Link") {
		if strings.Contains(l, `rel="next"`) || strings.Contains(l, `rel='next'`) {
			more = true
		}
	}
	return body.Tags, more, nil
}

func baselineDelete(ctx context.Context, cfg baselineConfig, tag string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, cfg.Base+"/v2/"+cfg.Repo+"/manifests/"+tag, nil)
	if err != nil {
		return false
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// queue is an unbounded FIFO, like ThreadPoolExecutor's work queue: pushing never blocks,
// so the lister never waits for deletes and the queue grows with the backlog.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []string
	head   int
	closed bool
}

func newQueue() *queue {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) push(s string) {
	q.mu.Lock()
	q.items = append(q.items, s)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pop returns the next item, waiting for one; false once closed and drained.
func (q *queue) pop() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.head == len(q.items) {
		return "", false
	}
	s := q.items[q.head]
	q.items[q.head] = ""
	q.head++
	if q.head == len(q.items) { // drained: reuse the backing array
		q.items, q.head = q.items[:0], 0
	}
	return s, true
}
