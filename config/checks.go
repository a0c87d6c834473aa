package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
)

// The checks of single keys, named in the flag table (Flag.check). Each says what is wrong
// with its key's value, naming the value; Validate adds where the value came from.

// show renders a value the way a user would type it: a duration as 2m, a string quoted.
func showValue(v any) string {
	switch x := v.(type) {
	case time.Duration:
		return FormatDuration(x)
	case string:
		return strconv.Quote(x)
	}
	return fmt.Sprint(v)
}

// atLeast is the check of a number or duration that must be min or more.
func atLeast[T int | int64 | float64 | time.Duration](min T) func(Config, any) error {
	return func(_ Config, v any) error {
		if x := v.(T); x < min {
			if min == 0 {
				return fmt.Errorf("%s is negative", showValue(x))
			}
			return fmt.Errorf("%s is below %s", showValue(x), showValue(min))
		}
		return nil
	}
}

// between is the check of a number that must lie in [lo, hi].
func between(lo, hi int) func(Config, any) error {
	return func(_ Config, v any) error {
		if x := v.(int); x < lo || x > hi {
			return fmt.Errorf("%d is not between %d and %d", x, lo, hi)
		}
		return nil
	}
}

// oneOf is the check of a string that must be one of values.
func oneOf(values ...string) func(Config, any) error {
	return func(_ Config, v any) error {
		if s := v.(string); !slices.Contains(values, s) {
			last := len(values) - 1
			return fmt.Errorf("%q is not %s or %s", s, strings.Join(values[:last], ", "), values[last])
		}
		return nil
	}
}

// onlyDemo applies check only to run --demo and ls --demo.
func onlyDemo(check func(Config, any) error) func(Config, any) error {
	return func(c Config, v any) error {
		if !c.Demo.Enabled {
			return nil
		}
		return check(c, v)
	}
}

// requiredUnlessLs: ls runs on embedded NATS without a URL (and must, with --demo).
func requiredUnlessLs(c Config, v any) error {
	if c.Command == CmdLs {
		if c.Demo.Enabled && v.(string) != "" {
			return errors.New("not allowed with --demo: the demo registry lives in this process, out of the workers' reach")
		}
		return nil
	}
	return required(c, v)
}

func required(_ Config, v any) error {
	if strings.TrimSpace(v.(string)) == "" {
		return errors.New("required")
	}
	return nil
}

func checkLogLevel(_ Config, v any) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(v.(string))); err != nil {
		return fmt.Errorf("%q is not debug, info, warn or error", v)
	}
	return nil
}

func checkRegistry(c Config, v any) error {
	reg := v.(string)
	demo := (c.Command == CmdRun || c.Command == CmdLs) && c.Demo.Enabled
	switch {
	case c.Command == CmdWorker && reg == "" && c.Token != "":
		return errors.New("required with --token: a worker sends the token only to this registry")
	case c.Command == CmdRestore && reg == "" && c.Token != "":
		return errors.New("required with --token: restore sends the token only to this registry")
	case reg == "" && !demo && c.Command != CmdWorker && c.Command != CmdRestore && !c.resuming():
		return errors.New("required (the registry host[:port], e.g. quay.io), unless --run-id names a recorded run to resume")
	case reg != "" && demo:
		return fmt.Errorf("%q is not allowed with --demo, which serves its own registry", reg)
	case reg != "":
		return checkHost(reg)
	}
	return nil
}

// resuming reports whether c may name a recorded run to resume, whose registry and
// repositories then come from the run's record: a run ID is given.
func (c Config) resuming() bool { return proto.ValidToken(c.RunID) }

func checkRepositories(c Config, v any) error {
	repos := v.([]string)
	if len(repos) == 0 && !((c.Command == CmdRun || c.Command == CmdLs) && c.Demo.Enabled) && c.Command != CmdWorker && !c.resuming() {
		return errors.New("required (e.g. openshift/ci), unless --run-id names a recorded run to resume")
	}
	var errs []error
	seen := map[string]bool{}
	for _, r := range repos {
		if len(r) > 255 || !proto.ValidRepository(r) {
			errs = append(errs, fmt.Errorf("%q is not a repository name (lower-case ns/name path, no registry host or tag)", r))
		}
		if seen[r] {
			errs = append(errs, fmt.Errorf("%q given twice", r))
		}
		seen[r] = true
	}
	return errors.Join(errs...)
}

func checkTTL(c Config, v any) error {
	ttl := v.(string)
	if ttl == "" {
		return nil
	}
	if c.Given("ttl-days") {
		return fmt.Errorf("%q conflicts with %s: give one of them", ttl, c.source("ttl-days"))
	}
	if d, err := policy.ParseTTL(ttl); err != nil {
		return fmt.Errorf("%q is not a duration such as 36h, 5d or 5d12h", ttl)
	} else if d < 0 {
		return fmt.Errorf("%q is negative", ttl)
	}
	return nil
}

func checkRunID(_ Config, v any) error {
	if id := v.(string); id != "" && !proto.ValidToken(id) {
		return fmt.Errorf("%q is not 1 to 64 of [A-Za-z0-9_-]", id)
	}
	return nil
}

// checkReport refuses a report file that could not be written at the end of the run,
// before the run deletes anything: it is written to a temporary file beside it and
// renamed, so its directory must take a new file.
func checkReport(_ Config, v any) error {
	path := v.(string)
	if path == "" {
		return nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%q is a directory", path)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%q: directory %s does not exist", path, dir)
	case err != nil:
		return fmt.Errorf("%q: %w", path, err)
	case !st.IsDir():
		return fmt.Errorf("%q: %s is not a directory", path, dir)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".check-*")
	if err != nil {
		return fmt.Errorf("%q cannot be written: %w", path, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// checkFile accepts an empty path or one naming a file that exists.
func checkFile(_ Config, v any) error {
	path := v.(string)
	if path == "" {
		return nil
	}
	if st, err := os.Stat(path); err != nil {
		return fmt.Errorf("%q: %w", path, errors.Unwrap(err))
	} else if st.IsDir() {
		return fmt.Errorf("%q is a directory", path)
	}
	return nil
}

func checkAuthHosts(_ Config, v any) error {
	var errs []error
	for _, h := range v.([]string) {
		errs = append(errs, checkHost(h))
	}
	return errors.Join(errs...)
}

func checkAuditMaxAge(_ Config, v any) error {
	switch d := v.(time.Duration); {
	case d < 0:
		return fmt.Errorf("%s is negative", FormatDuration(d))
	case d > 0 && d < time.Hour:
		return fmt.Errorf("%s is below 1h; 0 means the default, 2160h", FormatDuration(d))
	}
	return nil
}

// MinAuditMaxBytes is the smallest audit stream cap: a few batches of audit events.
const MinAuditMaxBytes = 1 << 20

func checkAuditMaxBytes(_ Config, v any) error {
	if n := v.(int64); n < 0 || n > 0 && n < MinAuditMaxBytes {
		return fmt.Errorf("%d is below %d (1 MiB); 0 means no cap", n, MinAuditMaxBytes)
	}
	return nil
}

// MinRecordsMaxAge is the shortest life of a run or shard record: the 7 days JetStream keeps
// a shard's message. A run whose records expired before it ended could not finish.
const MinRecordsMaxAge = 7 * 24 * time.Hour

func checkRecordsMaxAge(_ Config, v any) error {
	if d := v.(time.Duration); d < 0 || d > 0 && d < MinRecordsMaxAge {
		return fmt.Errorf("%s is below %s; 0 means forever", FormatDuration(d), FormatDuration(MinRecordsMaxAge))
	}
	return nil
}

func checkDeleteAPI(c Config, v any) error {
	switch api := v.(string); api {
	case DeleteAPIV2, "": // "" is the default, v2
	case DeleteAPIQuayV1:
		if c.Token == "" {
			return errors.New("quay-v1 needs --token (QUAY_OAUTH_TOKEN)")
		}
	default:
		return fmt.Errorf("%q is not v2 or quay-v1", api)
	}
	return nil
}

func checkAliases(_ Config, v any) error {
	var errs []error
	for _, a := range v.([]string) {
		if _, err := preserve.ParseAlias(a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkListenAddr accepts host:port or :port; empty (do not serve) is fine.
func checkListenAddr(_ Config, v any) error {
	addr := v.(string)
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port or :port", addr)
	}
	return nil
}

func checkSimAdmin(c Config, v any) error {
	if !v.(bool) {
		return nil
	}
	if host, _, err := net.SplitHostPort(c.Sim.Addr); err == nil && !loopback(host) {
		return fmt.Errorf("the admin endpoint is for loopback only; %s %q is not a loopback address", c.source("addr"), c.Sim.Addr)
	}
	return nil
}

// checkRule checks one policy key with the policy package itself, so the rules are
// checked in one place: the key is compiled on its own over the defaults, so every
// problem is reported against the key that caused it.
func checkRule(apply func(p *proto.Policy, c Config)) func(Config, any) error {
	return func(c Config, _ any) error {
		p := policy.Defaults()
		p.Cutoff = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // any cutoff: only the rules are checked here
		apply(&p, c)
		if _, err := policy.New(p); err != nil {
			msg := strings.TrimPrefix(err.Error(), "policy: ")
			// regexp's own words, "error parsing regexp: missing closing ]: `[a`", say less than
			// they could to someone who wrote a pattern in a configuration.
			msg = strings.ReplaceAll(msg, "error parsing regexp: ", "not a regular expression: ")
			return errors.New(strings.ReplaceAll(msg, "\n", "; "))
		}
		return nil
	}
}
