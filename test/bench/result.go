package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// sideResult is what one side of a scenario reports: the child process's own measurements
// (wall time, memory, outcome counters) plus, filled in by the parent, the registry's view
// (request counters of the sim) and the request rate over time.
type sideResult struct {
	Side string `json:"side"` // baseline, tagsweep, tagsweep-nosplit, ceiling

	// Measured by the child.
	WallSeconds  float64 `json:"wall_seconds"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"` // VmHWM of the child process
	TotalAlloc   uint64  `json:"total_alloc_bytes"`
	Mallocs      uint64  `json:"mallocs"`
	Scanned      int64   `json:"scanned"`
	Eligible     int64   `json:"eligible"`
	Deleted      int64   `json:"deleted"`
	AlreadyGone  int64   `json:"already_gone"`
	DeleteFailed int64   `json:"delete_failed"`
	ListFailed   bool    `json:"list_failed,omitempty"` // the baseline gave up listing
	Shards       int     `json:"shards,omitempty"`
	SplitShards  int     `json:"split_shards,omitempty"` // shards created by dynamic splits
	LongestShard float64 `json:"longest_shard_seconds,omitempty"`
	MedianShard  float64 `json:"median_shard_seconds,omitempty"`
	// ShardSpans are the shards' [claimed, finished] times in Unix milliseconds (tagsweep).
	ShardSpans [][2]int64 `json:"shard_spans,omitempty"`
	// SlotsBusyAfter is the time from the run's start until every slot (workers × slots) held
	// a shard at once; -1 never (tagsweep).
	SlotsBusyAfter float64 `json:"slots_busy_after_seconds,omitempty"`
	WorkerPeakRSS  []int64 `json:"worker_peak_rss_bytes,omitempty"` // with -worker-procs
	NATSPeakRSS    int64   `json:"nats_peak_rss_bytes,omitempty"`   // with -worker-procs
	Error          string  `json:"error,omitempty"`
	// The restore side: the restore alone, its requests counted by its client.
	Restored        int64   `json:"restored,omitempty"`
	RestoreFailed   int64   `json:"restore_failed,omitempty"`
	RestoreSkipped  int64   `json:"restore_skipped,omitempty"`
	RestoreSeconds  float64 `json:"restore_seconds,omitempty"`
	RestoreRequests int64   `json:"restore_requests,omitempty"`

	// Filled in by the parent from the sim.
	Lists        int64   `json:"lists"`
	Deletes      int64   `json:"deletes"`
	Requests     int64   `json:"requests"` // every request the sim saw, 429s included
	TooMany      int64   `json:"too_many_requests"`
	PeakRate     float64 `json:"peak_requests_per_second"`
	Sustained    float64 `json:"sustained_requests_per_second"` // median of the 1 s samples in the middle 80% of the run
	SustainedOK  float64 `json:"sustained_ok_per_second"`       // the same, counting only non-429 answers
	InFlight     float64 `json:"median_in_flight"`              // requests inside the registry, median of 100 ms samples
	ChildSeconds float64 `json:"child_seconds"`                 // the child process's whole life, start-up included
	// Timeline is the side's course every 100 ms, for the SVG.
	Timeline []sample `json:"timeline,omitempty"`
}

// sample is one moment of a side's timeline, T seconds after the side started.
type sample struct {
	T       float64 `json:"t"`
	Deleted int64   `json:"deleted"` // tags deleted so far
	Lists   int64   `json:"lists"`   // list calls so far
	Shards  int     `json:"shards"`  // tagsweep shards claimed and not finished
}

// TagsPerSecond is listed tags per second of wall time (the baseline and tagsweep list
// different amounts: the baseline lists everything).
func (r sideResult) TagsPerSecond() float64 { return per(float64(r.Scanned), r.WallSeconds) }

// RequestsPerSecond is every request the sim answered per second of wall time.
func (r sideResult) RequestsPerSecond() float64 { return per(float64(r.Requests), r.WallSeconds) }

func per(n, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return n / secs
}

// peakRSS returns this process's peak resident set size (VmHWM) in bytes, 0 if unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return parseVmHWM(b)
}

// parseVmHWM reads "VmHWM:   12345 kB" from a /proc/<pid>/status text.
func parseVmHWM(status []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// finish fills in the child's own process measurements.
func (r *sideResult) finish(start time.Time) {
	r.WallSeconds = time.Since(start).Seconds()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.TotalAlloc, r.Mallocs = ms.TotalAlloc, ms.Mallocs
	r.PeakRSSBytes = peakRSS()
}

// writeResult writes r as JSON to path.
func writeResult(path string, r sideResult) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func readResult(path string) (sideResult, error) {
	var r sideResult
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("read child result: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode child result %s: %w", path, err)
	}
	return r, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
