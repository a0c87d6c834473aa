package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

func TestDifferences(t *testing.T) {
	start := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	p := policy.Defaults()
	p.Cutoff = start.Add(-120 * time.Hour)
	p.KeepPatterns = []string{"^a", "^b"}
	p.DryRun = true
	rec := proto.RunRecord{RunID: "r", Registry: "quay.io", Repositories: []string{"ci/a", "ci/b"}, Policy: p, StartedAt: start,
		Preservation: proto.PreserveSettings{Enabled: true, Aliases: []string{"proxy/ci/a=ci/a"}}}
	// same is a Config that agrees with rec in every setting.
	same := func() Config {
		q := p
		q.Cutoff = time.Time{}
		q.KeepPatterns = []string{"^b", "^a"} // order does not matter
		return Config{Registry: "quay.io", Repositories: []string{"ci/b", "ci/a"}, Policy: q, TTL: 120 * time.Hour,
			PreservePayloads: true, RepositoryAliases: []string{"proxy/ci/a=ci/a"}}
	}
	all := Given{Registry: true, DryRun: true, TTL: true, PrunePattern: true, KeepPatterns: true, TimeZone: true,
		MaxDeletes: true, Preserve: true, Aliases: true}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // each a line prefix of the differences, in order
	}{
		{name: "nothing given", mutate: func(c *Config) { *c = Config{TTL: time.Hour, Policy: proto.Policy{DryRun: false}} }},
		{name: "all given, all the same", mutate: func(c *Config) { c.Given = all }},
		{name: "differences not given are the record's", mutate: func(c *Config) {
			c.Policy.DryRun, c.TTL, c.Policy.TimeZone = false, time.Hour, "Europe/Prague"
		}},
		{name: "every difference given", mutate: func(c *Config) {
			c.Given = all
			c.Registry, c.Repositories, c.Policy.DryRun, c.TTL = "ghcr.io", []string{"ci/a"}, false, 30*24*time.Hour
			c.Policy.PrunePattern, c.Policy.KeepPatterns, c.Policy.TimeZone = `^(\d{14})_x_`, nil, "Europe/Prague"
			c.Policy.MaxDeletes, c.PreservePayloads, c.RepositoryAliases = 10, false, nil
		}, want: []string{"repositories:", "registry:", "mode: given DELETING, recorded DRY RUN", "cutoff: given TTL 720h0m0s",
			"prune pattern:", "keep patterns:", "time zone:", "delete cap: given 10, recorded none",
			"release payload preservation: given off, recorded on", "repository aliases:"}},
		{name: "an explicit cutoff", mutate: func(c *Config) {
			c.Given.TTL = true
			c.Policy.Cutoff = start.Add(-time.Hour)
		}, want: []string{"cutoff: given cutoff 2026-11-22T02:00:00Z, recorded cutoff 2026-11-17T03:00:00Z (TTL 120h0m0s)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := same()
			tc.mutate(&c)
			got := Differences(c, rec)
			if len(got) != len(tc.want) {
				t.Fatalf("Differences = %q, want %d lines starting %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("Differences[%d] = %q, want it to start %q", i, got[i], w)
				}
			}
		})
	}
}
