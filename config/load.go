package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"sigs.k8s.io/yaml"
)

// origin is where a key's value came from. It holds names only, never the value, so a
// Config that prints its origins cannot leak a secret.
type origin struct {
	from from
	// name is the environment variable or the file the value came from.
	name string
	// failed is set when the value could not be decoded: the field keeps its default and
	// Validate does not check it again.
	failed bool
}

type from int

const (
	fromDefault from = iota
	fromFlag
	fromEnv
	fromFile
)

// source names where the value of key came from, the way a user would find it:
// --key, TAGSWEEP_KEY (or the other variable that was read) or file: key.
func (c Config) source(key string) string {
	o := c.origins[key]
	switch o.from {
	case fromEnv:
		return o.name
	case fromFile:
		return o.name + ": " + key
	}
	return "--" + key
}

// Given reports whether key was set by a flag, the environment or the file, not
// just defaulted.
func (c Config) Given(key string) bool { return c.origins[key].from != fromDefault }

// Load reads the configuration of cmd, each key from (highest first) its flag in
// flags, its environment variables, the YAML file named by --config /
// TAGSWEEP_CONFIG, and the table default, and validates it. The error lists every
// problem at once: keys of the file that are no key, values that cannot be decoded
// and values that are wrong, each naming where it came from and the value.
func Load(cmd string, flags *pflag.FlagSet) (Config, error) {
	c, problems, err := load(cmd, flags)
	if err != nil {
		return Config{}, err
	}
	if err := errors.Join(append(problems, c.Validate())...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Decode is Load without Validate, for a caller that takes what it can get (shell
// completion): a key that cannot be decoded is an error, a wrong value is not.
func Decode(cmd string, flags *pflag.FlagSet) (Config, error) {
	c, problems, err := load(cmd, flags)
	if err != nil {
		return Config{}, err
	}
	if err := errors.Join(problems...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// load returns the configuration and every key problem (unknown or undecodable); err
// is what stops loading altogether (an unknown command, a file that cannot be read).
func load(cmd string, flags *pflag.FlagSet) (c Config, problems []error, err error) {
	if !slices.Contains(Commands(), cmd) {
		return Config{}, nil, fmt.Errorf("unknown command %q", cmd)
	}
	table := Flags()
	c = Config{Command: cmd, origins: map[string]origin{}}

	file := ""
	if changed(flags, "config") {
		file, _ = flags.GetString("config")
	} else if v, ok := lookupEnv(mustLookup(table, "config").Env); ok {
		file = v
	}
	var fv *viper.Viper
	if file != "" {
		fv = viper.New()
		fv.SetConfigFile(file)
		fv.SetConfigType("yaml") // whatever the file is called (a mounted ConfigMap key has no extension)
		if err := fv.ReadInConfig(); err != nil {
			return Config{}, nil, fmt.Errorf("reading config file %s: %w", file, err)
		}
		problems = append(problems, checkFileKeys(file, fv, table)...)
	}
	empties, emptyKeys, err := findEmpties(cmd, flags, file, table)
	if err != nil {
		return Config{}, nil, err
	}
	problems = append(problems, empties...)

	for _, f := range table {
		if !f.For(cmd) {
			continue
		}
		ptr := f.field(&c)
		if d := f.DefaultFor(cmd); d == nil {
			// nil: the field's zero value
		} else if err := set(ptr, d); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", f.Name, err)) // a wrong table, caught by its tests
		}
		var o origin
		var raw any
		switch {
		case changed(flags, f.Name):
			o, raw = origin{from: fromFlag}, flagValue(flags, f)
		case envFor(f) != "":
			env := envFor(f)
			val, _ := os.LookupEnv(env)
			o, raw = origin{from: fromEnv, name: env}, val
			if f.Kind == KindStrings {
				raw = splitList(val, f.EnvSep)
			}
		case fv != nil && fv.InConfig(f.Name):
			o, raw = origin{from: fromFile, name: file}, fv.Get(f.Name)
		default:
			c.origins[f.Name] = o
			continue
		}
		if err := decode(ptr, f.Kind, raw); err != nil {
			o.failed = true
			problems = append(problems, fmt.Errorf("%s: %s", c.withOrigin(f.Name, o), err))
		}
		c.origins[f.Name] = o
	}
	for _, k := range emptyKeys {
		o := c.origins[k]
		o.failed = true // reported as empty: its check would only say so again
		c.origins[k] = o
	}
	c.Repositories = cleanList(c.Repositories)
	c.KeepRegex = cleanList(c.KeepRegex)
	c.AuthHosts = cleanList(c.AuthHosts)
	return c, problems, nil
}

// findEmpties reports every empty value given for a key that refuses one (Flag.NoEmpty),
// in each place it was given, whichever place wins: load ignores an empty environment
// variable and drops empty list items, so the values must be read at their source.
// keys are the keys that had one.
func findEmpties(cmd string, flags *pflag.FlagSet, file string, table []Flag) (errs []error, keys []string, err error) {
	var fileValues map[string]any
	if file != "" {
		// Read apart from viper, which does not tell a key given as `key:` from one not
		// given at all.
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("reading config file %s: %w", file, err)
		}
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return nil, nil, fmt.Errorf("reading config file %s: %w", file, err)
		}
	}
	for _, f := range table {
		if !f.NoEmpty || !f.For(cmd) {
			continue
		}
		what := "empty"
		if f.Kind == KindStrings {
			what = "an empty item"
		}
		bad := func(o origin) {
			if !slices.Contains(keys, f.Name) {
				keys = append(keys, f.Name)
			}
			errs = append(errs, fmt.Errorf("%s: %s: remove it or give a value", Config{}.withOrigin(f.Name, o), what))
		}
		if changed(flags, f.Name) {
			vals := []string{flags.Lookup(f.Name).Value.String()}
			if sv, ok := flags.Lookup(f.Name).Value.(pflag.SliceValue); ok {
				vals = sv.GetSlice() // not GetStringArray, which reads [""] as no item
			}
			if slices.ContainsFunc(vals, blank) {
				bad(origin{from: fromFlag})
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
				bad(origin{from: fromEnv, name: name})
			}
		}
		if v, ok := fileValues[f.Name]; ok && emptyYAML(v) {
			bad(origin{from: fromFile, name: file})
		}
	}
	return errs, keys, nil
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

// withOrigin is source for an origin not yet stored in c.
func (c Config) withOrigin(key string, o origin) string {
	d := Config{origins: map[string]origin{key: o}}
	return d.source(key)
}

// envFor returns the first of f's environment variables that is set to a non-empty
// value, "" when none is.
func envFor(f Flag) string {
	for _, n := range f.Env {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			return n
		}
	}
	return ""
}

// flagValue is the typed value of a flag that was given on the command line.
func flagValue(fs *pflag.FlagSet, f Flag) any {
	var v any
	switch f.Kind {
	case KindStrings:
		v, _ = fs.GetStringArray(f.Name)
	case KindInt:
		v, _ = fs.GetInt(f.Name)
	case KindInt64:
		v, _ = fs.GetInt64(f.Name)
	case KindFloat:
		v, _ = fs.GetFloat64(f.Name)
	case KindBool:
		v, _ = fs.GetBool(f.Name)
	case KindDuration:
		v, _ = fs.GetDuration(f.Name)
	default:
		v, _ = fs.GetString(f.Name)
	}
	return v
}

// checkFileKeys reports every key of the config file that is not a known key, with
// the closest known name when there is one.
func checkFileKeys(file string, fv *viper.Viper, table []Flag) []error {
	known := make(map[string]bool, len(table))
	for _, f := range table {
		known[f.Name] = true
	}
	keys := fv.AllKeys()
	slices.Sort(keys)
	var errs []error
	for _, k := range keys {
		if top, _, _ := strings.Cut(k, "."); known[k] || known[top] {
			continue // a known key holding a map: its decoding says what is wrong
		}
		msg := fmt.Sprintf("%s: unknown key %q", file, k)
		if s := closest(k, table); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}

// closest returns the key nearest to k by edit distance, if it is near enough to be
// a typo.
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
	return fs != nil && fs.Lookup(name) != nil && fs.Changed(name)
}

// lookupEnv returns the value of the first of names that is set to a non-empty value.
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
