// Package config is tagsweep's configuration: one table of every key (Flags), loading
// from flags, environment and a YAML file (Load), and one Validate that reports every
// problem at once. Only this package and cmd/ import viper.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"sigs.k8s.io/yaml"
)

// Config is the typed configuration of one command. Fields hold plain Go values; which
// of them a command reads is given by the flag table (Flags). The mapstructure tag of
// each field is its key.
type Config struct {
	// Command is the command this configuration was loaded for.
	Command string `mapstructure:"-"`
	// TTLDaysSet is true when ttl-days was given by a flag, the environment or the file
	// (not just defaulted), which is what makes it conflict with ttl.
	TTLDaysSet bool `mapstructure:"-"`
	// empties are the empty values Load found given for keys that refuse them (Flag.NoEmpty),
	// for Validate to report with every other problem.
	empties []error

	File      string `mapstructure:"config"`
	LogFormat string `mapstructure:"log-format"`
	LogLevel  string `mapstructure:"log-level"`
	NATSURL   string `mapstructure:"nats-url"`

	Registry     string        `mapstructure:"registry"`
	Repositories []string      `mapstructure:"repository"`
	TTLDays      int           `mapstructure:"ttl-days"`
	TTL          string        `mapstructure:"ttl"`
	Confirm      bool          `mapstructure:"confirm"`
	PlainHTTP    bool          `mapstructure:"plain-http"`
	Report       string        `mapstructure:"report"`
	Output       string        `mapstructure:"output"`
	RunID        string        `mapstructure:"run-id"`
	ShardBy      string        `mapstructure:"shard-by"`
	PruneRegex   string        `mapstructure:"prune-regex"`
	KeepRegex    []string      `mapstructure:"keep-regex"`
	TagTimezone  string        `mapstructure:"tag-timezone"`
	MaxDeletes   int64         `mapstructure:"max-deletes"`
	PageSize     int           `mapstructure:"page-size"`
	DockerConfig string        `mapstructure:"docker-config"`
	Token        Secret        `mapstructure:"token"`
	AuthHosts    []string      `mapstructure:"auth-host"`
	MaxRPS       float64       `mapstructure:"max-rps"`
	DeleteAPI    string        `mapstructure:"delete-api"`
	Preserve     bool          `mapstructure:"preserve-payloads"`
	RepoAliases  []string      `mapstructure:"repository-alias"`
	Workers      int           `mapstructure:"workers"`
	Slots        int           `mapstructure:"slots"`
	DeleteConc   int           `mapstructure:"delete-concurrency"`
	SplitAfter   time.Duration `mapstructure:"split-after"`
	AckWait      time.Duration `mapstructure:"ack-wait"`
	MaxDeliver   int           `mapstructure:"max-deliver"`
	NATSReplicas int           `mapstructure:"nats-replicas"`
	DataDir      string        `mapstructure:"data-dir"`
	HTTPAddr     string        `mapstructure:"http-addr"`

	Demo        bool          `mapstructure:"demo"`
	DemoTags    int           `mapstructure:"demo-tags"`
	DemoDays    int           `mapstructure:"demo-days"`
	DemoLatency time.Duration `mapstructure:"demo-latency"`

	SimAddr    string        `mapstructure:"addr"`
	SimTags    int           `mapstructure:"tags"`
	SimDays    int           `mapstructure:"days"`
	SimLatency time.Duration `mapstructure:"latency"`
	SimSeed    int64         `mapstructure:"seed"`
	SimAdmin   bool          `mapstructure:"admin"`

	StaleAfter time.Duration `mapstructure:"stale-after"`
}

// Secret is a string that never prints: fmt, slog and JSON all show "REDACTED".
// Reveal returns the value for the one place that must send it.
type Secret string

const redacted = "REDACTED"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String implements fmt.Stringer.
func (s Secret) String() string { return s.mask() }

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.mask()) }

// Format implements fmt.Formatter so that every verb (%s, %v, %q, %x…) is redacted.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.mask())
		return
	}
	fmt.Fprint(f, s.mask())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

// Load reads the configuration of cmd, each key from (highest first) its flag in
// flags, its environment variables, the YAML file named by --config /
// TAGSWEEP_CONFIG, and the table default. A key in the file that is not in the table
// is an error naming it; so is a value of the wrong type. Load does not validate:
// call Validate.
func Load(cmd string, flags *pflag.FlagSet) (Config, error) {
	if !slices.Contains(Commands(), cmd) {
		return Config{}, fmt.Errorf("unknown command %q", cmd)
	}
	table := Flags()
	v := viper.New()
	for _, f := range table {
		if !f.For(cmd) {
			continue
		}
		v.SetDefault(f.Name, f.DefaultFor(cmd))
		if err := v.BindEnv(append([]string{f.Name}, f.Env...)...); err != nil {
			return Config{}, fmt.Errorf("binding environment of %s: %w", f.Name, err)
		}
		if flags == nil {
			continue
		}
		if pf := flags.Lookup(f.Name); pf != nil {
			if err := v.BindPFlag(f.Name, pf); err != nil {
				return Config{}, fmt.Errorf("binding flag --%s: %w", f.Name, err)
			}
		}
	}

	file := v.GetString("config")
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml") // whatever the file is called (a mounted ConfigMap key has no extension)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("reading config file %s: %w", file, err)
		}
		if err := checkFileKeys(file, v, table); err != nil {
			return Config{}, err
		}
	}

	// A list given in the environment is split here, on the flag's own separator
	// (keep-regex is one regexp per line so that a regexp may hold a comma). The
	// environment outranks the file and the default, so overriding with Set only when
	// the flag itself was not given keeps the precedence.
	for _, f := range table {
		if f.Kind != KindStrings || !f.For(cmd) || changed(flags, f.Name) {
			continue
		}
		if val, ok := lookupEnv(f.Env); ok {
			v.Set(f.Name, splitList(val, f.EnvSep))
		}
	}

	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return Config{}, fmt.Errorf("decoding configuration: %w", err)
	}
	c.Command = cmd
	c.Repositories = cleanList(c.Repositories)
	c.KeepRegex = cleanList(c.KeepRegex)
	c.AuthHosts = cleanList(c.AuthHosts)
	_, envTTLDays := lookupEnv(mustLookup(table, "ttl-days").Env)
	c.TTLDaysSet = changed(flags, "ttl-days") || envTTLDays || v.InConfig("ttl-days")
	empties, err := findEmpties(cmd, flags, file, table)
	if err != nil {
		return Config{}, err
	}
	c.empties = empties
	return c, nil
}

// findEmpties reports every empty value given for a key that refuses one (Flag.NoEmpty), in
// each place it was given, whichever place wins: Load itself drops empty list items and
// viper ignores an empty environment variable, so the values must be read at their source.
func findEmpties(cmd string, flags *pflag.FlagSet, file string, table []Flag) ([]error, error) {
	var fileValues map[string]any
	if file != "" {
		// Read apart from viper, which does not tell a key given as `key:` from one not
		// given at all.
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading config file %s: %w", file, err)
		}
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return nil, fmt.Errorf("reading config file %s: %w", file, err)
		}
	}
	var errs []error
	for _, f := range table {
		if !f.NoEmpty || !f.For(cmd) {
			continue
		}
		bad := func(where string) {
			what := "empty"
			if f.Kind == KindStrings {
				what = "an empty item"
			}
			errs = append(errs, fmt.Errorf("--%s: %s %s: remove it or give a value", f.Name, what, where))
		}
		if changed(flags, f.Name) {
			vals := []string{flags.Lookup(f.Name).Value.String()}
			if sv, ok := flags.Lookup(f.Name).Value.(pflag.SliceValue); ok {
				vals = sv.GetSlice() // not GetStringArray, which reads [""] as no item
			}
			if slices.ContainsFunc(vals, blank) {
				bad("on the command line")
			}
		}
		for _, name := range f.Env {
			val, ok := os.LookupEnv(name)
			if !ok {
				continue
			}
			items := []string{val}
			if f.Kind == KindStrings {
				// A value written as a YAML block ends in a newline: that is not an item.
				items = strings.Split(strings.TrimRight(val, "\r\n"), f.EnvSep)
			}
			if slices.ContainsFunc(items, blank) {
				bad("in " + name)
			}
		}
		if v, ok := fileValues[f.Name]; ok && emptyYAML(v) {
			bad("in config file " + file)
		}
	}
	return errs, nil
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// emptyYAML reports whether a value read from the file is empty or holds an empty item:
// `key:`, `key: ""` or `key: ["", x]`. An empty list, `key: []`, says "none" on purpose.
func emptyYAML(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return blank(v)
	case []any:
		return slices.ContainsFunc(v, emptyYAML)
	case []string:
		return slices.ContainsFunc(v, blank)
	}
	return false
}

// checkFileKeys reports every key of the config file that is not a known flag name,
// with the closest known name when there is one.
func checkFileKeys(file string, v *viper.Viper, table []Flag) error {
	known := make(map[string]bool, len(table))
	for _, f := range table {
		known[f.Name] = true
	}
	var errs []error
	for _, k := range v.AllKeys() {
		if known[k] || !v.InConfig(k) {
			continue
		}
		msg := fmt.Sprintf("config file %s: unknown key %q", file, k)
		if s := closest(k, table); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		errs = append(errs, errors.New(msg))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// closest returns the flag name nearest to k by edit distance, if it is near enough
// to be a typo.
func closest(k string, table []Flag) string {
	best, bestD := "", 3
	for _, f := range table {
		if d := editDistance(k, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func mustLookup(table []Flag, name string) Flag {
	for _, f := range table {
		if f.Name == name {
			return f
		}
	}
	panic("config: no flag " + name)
}

func changed(fs *pflag.FlagSet, name string) bool {
	return fs != nil && fs.Changed(name)
}

// lookupEnv returns the first of names that is set to a non-empty value.
func lookupEnv(names []string) (string, bool) {
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

func splitList(s, sep string) []string {
	if sep == "" {
		sep = ","
	}
	return cleanList(strings.Split(s, sep))
}

// cleanList trims every item and drops empty ones.
func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Redacted returns a copy of c that is safe to print: the token and any password in
// the NATS URL are replaced by REDACTED.
func (c Config) Redacted() Config {
	r := c
	r.Token = Secret(c.Token.mask())
	r.NATSURL = redactURLs(c.NATSURL)
	r.Repositories = slices.Clone(c.Repositories)
	r.KeepRegex = slices.Clone(c.KeepRegex)
	r.AuthHosts = slices.Clone(c.AuthHosts)
	return r
}

// redactURLs hides the password of every URL in a comma-separated list.
func redactURLs(s string) string {
	if s == "" {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = redacted
			}
			continue
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), redacted)
			} else {
				u.User = url.User(redacted) // a bare user part is a token
			}
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// LogValue implements slog.LogValuer: the keys the command takes, redacted.
func (c Config) LogValue() slog.Value {
	r := c.Redacted()
	vals := r.values()
	attrs := make([]slog.Attr, 0, len(vals))
	for _, f := range Flags() {
		if !f.For(c.Command) && c.Command != "" {
			continue
		}
		if val, ok := vals[f.Name]; ok {
			attrs = append(attrs, slog.Any(f.Name, val))
		}
	}
	return slog.GroupValue(attrs...)
}

// values maps each key to its field's value.
func (c Config) values() map[string]any {
	return map[string]any{
		"config": c.File, "log-format": c.LogFormat, "log-level": c.LogLevel, "nats-url": c.NATSURL,
		"registry": c.Registry, "repository": c.Repositories, "ttl-days": c.TTLDays, "ttl": c.TTL,
		"confirm": c.Confirm, "plain-http": c.PlainHTTP, "report": c.Report, "output": c.Output, "run-id": c.RunID,
		"shard-by": c.ShardBy, "prune-regex": c.PruneRegex, "keep-regex": c.KeepRegex,
		"tag-timezone": c.TagTimezone, "max-deletes": c.MaxDeletes, "page-size": c.PageSize,
		"docker-config": c.DockerConfig, "token": c.Token.mask(), "auth-host": c.AuthHosts, "max-rps": c.MaxRPS,
		"delete-api": c.DeleteAPI, "preserve-payloads": c.Preserve, "repository-alias": c.RepoAliases,
		"workers": c.Workers, "slots": c.Slots, "delete-concurrency": c.DeleteConc, "split-after": c.SplitAfter,
		"ack-wait": c.AckWait, "max-deliver": c.MaxDeliver, "nats-replicas": c.NATSReplicas,
		"data-dir": c.DataDir, "http-addr": c.HTTPAddr, "demo": c.Demo, "demo-tags": c.DemoTags,
		"demo-days": c.DemoDays, "demo-latency": c.DemoLatency, "addr": c.SimAddr, "tags": c.SimTags,
		"days": c.SimDays, "latency": c.SimLatency, "seed": c.SimSeed, "admin": c.SimAdmin,
		"stale-after": c.StaleAfter,
	}
}

// plain is Config without its methods, so that Format and MarshalJSON can print the
// redacted copy without recursing.
type plain Config

// Format implements fmt.Formatter: every verb prints the redacted configuration, so a
// stray %v or %+v cannot leak a secret.
func (c Config) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(c.Redacted()))
}

// MarshalJSON implements json.Marshaler with the redacted configuration.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(plain(c.Redacted())) }
