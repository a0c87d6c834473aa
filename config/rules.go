package config

import (
	"time"

	"github.com/tagsweep/tagsweep/keyspace"
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

// ShardWidth is the shard boundary width of --shard-by (validated by Validate).
func (c Config) ShardWidth() keyspace.Width {
	w, err := keyspace.ParseWidth(c.ShardBy)
	if err != nil {
		return keyspace.Day
	}
	return w
}
