package config

import (
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// Policy is the run's deletion rule from the configuration, without the cutoff: the
// coordinator fixes the cutoff once, at the run's start (see TTLDuration).
func (c Config) Policy() proto.Policy {
	p := policy.Defaults()
	p.PrunePattern = c.PruneRegex
	p.KeepPatterns = append([]string(nil), c.KeepRegex...)
	p.TimeZone = c.TagTimezone
	p.MaxDeletes = c.MaxDeletes
	p.DryRun = !c.Confirm
	p.RecordDigests = c.RecordDigests
	return p
}

// TTLDuration is the run's time-to-live: --ttl when given, else --ttl-days
// (-1 = 0, every prune tag dated before the run start).
func (c Config) TTLDuration() (time.Duration, error) {
	if c.TTL != "" {
		return policy.ParseTTL(c.TTL)
	}
	return policy.DaysTTL(c.TTLDays)
}

// PlanShards is how many shards planning cuts a repository into at least: --shards, or for
// `run` (and `ls` on embedded NATS) the slots of its workers (--workers × --slots), or 0 (the
// coordinator's default).
func (c Config) PlanShards(cmd string) int {
	if c.Shards == 0 && (cmd == CmdRun || cmd == CmdLs && c.NATSURL == "") {
		return c.Workers * c.Slots
	}
	return c.Shards
}
