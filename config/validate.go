package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

var hostRE = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$`)

// Values of --delete-api.
const (
	DeleteAPIV2     = "v2"
	DeleteAPIQuayV1 = "quay-v1"
)

// MaxPageSize is the largest tags/list page tagsweep asks for (registries may cap it lower).
const MaxPageSize = 1000

// Validate reports every problem of c for its command at once (errors.Join), each
// naming where the value came from (--key, TAGSWEEP_KEY or file: key) and the value.
// Nothing should run when it returns an error.
func (c Config) Validate() error {
	if !slices.Contains(Commands(), c.Command) {
		return fmt.Errorf("unknown command %q", c.Command)
	}
	var errs []error
	for _, f := range Flags() {
		if !f.For(c.Command) || f.check == nil || c.origins[f.Name].failed {
			continue
		}
		v := reflect.ValueOf(f.field(&c)).Elem().Interface()
		for _, p := range unjoin(f.check(c, v)) {
			errs = append(errs, fmt.Errorf("%s: %w", c.source(f.Name), p))
		}
	}
	failed := slices.ContainsFunc(slices.Collect(maps.Values(c.origins)), func(o origin) bool { return o.failed })
	if len(errs) == 0 && !failed && slices.Contains(allPruning, c.Command) {
		// The rules together: a combination the checks of single keys cannot see must
		// still fail here, not at the coordinator. Only when every key passed on its
		// own, so that no problem is reported twice.
		p := c.Policy()
		p.Cutoff = time.Now()
		if _, err := policy.New(p); err != nil {
			errs = append(errs, errors.New(strings.ReplaceAll(err.Error(), "\n", "; ")))
		}
	}
	return errors.Join(errs...)
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkHost accepts host or host:port, and says what is wrong with anything else.
func checkHost(s string) error {
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q has a scheme: give host[:port] only (use --plain-http for http)", s)
	}
	if strings.ContainsAny(s, "/ \t@?#") {
		return fmt.Errorf("%q is not host[:port]", s)
	}
	host := s
	if strings.Contains(s, ":") && !strings.HasSuffix(s, "]") {
		h, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("%q is not host[:port]: %w", s, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not 1 to 65535", s, port)
		}
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if !hostRE.MatchString(host) {
		return fmt.Errorf("%q is not host[:port]", s)
	}
	return nil
}

// loopback reports whether host is a loopback name or address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkOutput checks --output for the command: a status format, or an audit format (or, the
// deprecated spelling, the audit file when --output-file is not given too).
func checkOutput(c Config, v any) error {
	out := v.(string)
	switch c.Command {
	case CmdStatus:
		if !slices.Contains([]string{"", OutputTable, OutputWide, OutputJSON}, out) {
			return fmt.Errorf("%q is not table, wide or json", out)
		}
	case CmdLs:
		if !slices.Contains([]string{OutputTable, OutputJSON}, out) {
			return fmt.Errorf("%q is not table or json", out)
		}
	case CmdAudit:
		if _, file, deprecated := c.AuditOutput(); deprecated && c.OutputFile != "" {
			return fmt.Errorf("%q is not jsonl or csv (the file goes in --output-file, which is %q)", file, c.OutputFile)
		}
	}
	return nil
}

// checkStates checks that every --state item names a run or shard state.
func checkStates(c Config, _ any) error {
	states := []string{string(proto.StatePending)} // the one shard state that is no run state
	for _, s := range proto.RunStates {
		states = append(states, string(s))
	}
	var errs []error
	for _, s := range c.Status.StateList() {
		if !slices.Contains(states, s) {
			errs = append(errs, fmt.Errorf("%q is not one of %s", s, strings.Join(states, ", ")))
		}
	}
	return errors.Join(errs...)
}

func checkMinTTL(_ Config, v any) error {
	ttl := v.(string)
	if ttl == "" {
		return nil
	}
	if d, err := policy.ParseTTL(ttl); err != nil {
		return fmt.Errorf("%q is not a duration such as 36h, 5d or 5d12h", ttl)
	} else if d < 0 {
		return fmt.Errorf("%q is negative", ttl)
	}
	return nil
}

// natsAuthKeys are the keys of the ways to authenticate to NATS, one of which may be given
// (the password goes with the user).
var natsAuthKeys = []string{"nats-creds", "nats-nkey", "nats-user", "nats-token", "nats-token-file"}

// natsAuthSet reports whether key's way to authenticate to NATS is given in c.
func natsAuthSet(c Config, key string) bool {
	switch key {
	case "nats-creds":
		return c.NATS.Creds != ""
	case "nats-nkey":
		return c.NATS.NKey != ""
	case "nats-user":
		return c.NATS.User != ""
	case "nats-token":
		return c.NATS.Token != ""
	case "nats-token-file":
		return c.NATS.TokenFile != ""
	}
	return false
}

// natsAuth checks key, a way to authenticate to NATS: with check (if any), and that no way
// before it in natsAuthKeys is given too, so that a conflict is reported once, on the later key.
func natsAuth(key string, check func(Config, any) error) func(Config, any) error {
	return func(c Config, v any) error {
		var err error
		if check != nil {
			err = check(c, v)
		}
		if !natsAuthSet(c, key) {
			return err
		}
		for _, k := range natsAuthKeys {
			if k == key {
				break
			}
			if natsAuthSet(c, k) {
				return errors.Join(err, fmt.Errorf("conflicts with %s: give one way to authenticate to NATS", c.source(k)))
			}
		}
		return err
	}
}

func checkNATSPassword(c Config, v any) error {
	if v.(Secret) != "" && c.NATS.User == "" {
		return errors.New("given without --nats-user")
	}
	return nil
}

// pairedWith checks a file that needs another key given with it (a certificate and its key).
func pairedWith(other string, get func(Config) string) func(Config, any) error {
	return func(c Config, v any) error {
		if v.(string) == "" {
			return nil
		}
		if get(c) == "" {
			return fmt.Errorf("given without --%s", other)
		}
		return checkFile(c, v)
	}
}

func checkTagRegex(_ Config, v any) error {
	if re := v.(string); re != "" {
		if _, err := regexp.Compile(re); err != nil {
			return err
		}
	}
	return nil
}
