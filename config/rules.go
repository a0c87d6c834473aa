package config

import (
	"errors"
	"fmt"
	"strings"
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

// checkRules validates the policy flags with the policy package itself, so the rules
// are checked in one place. Each flag is compiled on its own over the defaults, so
// that every problem is reported against the flag that caused it.
func (c Config) checkRules() []error {
	check := func(flag string, mutate func(*proto.Policy)) error {
		p := policy.Defaults()
		p.Cutoff = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // any cutoff: only the rules are checked here
		mutate(&p)
		if _, err := policy.New(p); err != nil {
			msg := strings.TrimPrefix(err.Error(), "policy: ")
			return fmt.Errorf("--%s: %s", flag, strings.ReplaceAll(msg, "\n", "; "))
		}
		return nil
	}
	var errs []error
	if err := check("prune-regex", func(p *proto.Policy) { p.PrunePattern = c.PruneRegex }); err != nil {
		errs = append(errs, err)
	}
	if err := check("keep-regex", func(p *proto.Policy) { p.KeepPatterns = c.KeepRegex }); err != nil {
		errs = append(errs, err)
	}
	if err := check("tag-timezone", func(p *proto.Policy) { p.TimeZone = c.TagTimezone }); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		// Together too: a combination the single checks cannot see must still fail here,
		// not at the coordinator.
		p := c.Policy()
		p.Cutoff = time.Now()
		if _, err := policy.New(p); err != nil {
			errs = append(errs, errors.New(strings.ReplaceAll(err.Error(), "\n", "; ")))
		}
	}
	return errs
}
