package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Command names: the cobra subcommands that take configuration.
const (
	CmdRun         = "run"
	CmdCoordinator = "coordinator"
	CmdWorker      = "worker"
	CmdStatus      = "status"
	CmdAudit       = "audit"
	CmdStop        = "stop"
	CmdRestore     = "restore"
	CmdSim         = "sim"
	CmdLs          = "ls"
)

// Commands lists every command that takes configuration, in help order.
func Commands() []string {
	return []string{CmdRun, CmdCoordinator, CmdWorker, CmdStatus, CmdAudit, CmdStop, CmdRestore, CmdSim, CmdLs}
}

// Kind is the type of a flag's value.
type Kind string

const (
	KindString   Kind = "string"
	KindStrings  Kind = "strings" // repeatable flag; a YAML list in the file
	KindInt      Kind = "int"
	KindInt64    Kind = "int64"
	KindFloat    Kind = "float"
	KindBool     Kind = "bool"
	KindDuration Kind = "duration"
)

// EnvPrefix prefixes the environment variable of every flag.
const EnvPrefix = "TAGSWEEP_"

// Flag describes one configuration key. The same name is the command-line flag
// (--name), the key in the YAML file (name: value) and, upper-cased with '-'
// replaced by '_' and prefixed with TAGSWEEP_, the environment variable.
type Flag struct {
	Name     string
	Short    string // one-letter shorthand (-o), if any
	Kind     Kind
	Default  any            // typed: string, []string, int, int64, float64, bool, time.Duration
	Defaults map[string]any // per-command defaults that differ from Default
	Usage    string         // one line; a `word` in back quotes names the value in --help
	// Usages are per-command usage lines that differ from Usage.
	Usages map[string]string
	// Env are the environment variables read for this key, in precedence order.
	// The first is always TAGSWEEP_<NAME>; others are the existing pruner's names.
	Env []string
	// EnvSep separates the items of a KindStrings value given in the environment.
	EnvSep string
	// Commands are the commands that take this flag.
	Commands []string
	// Secret values are never logged or printed.
	Secret bool
	// NoEmpty refuses an empty value (or, for a list, an empty item) wherever it is given:
	// on the command line, in the environment or in the file. An empty keep pattern
	// would otherwise be dropped, an empty prune pattern or time zone replaced by the
	// default, and an empty registry, repository or minimum TTL would lift a worker's
	// floor, so that an unset variable in a Job spec silently changes what is deleted.
	NoEmpty bool

	// field points at the key's field of a Config; its type matches Kind (Secret for a
	// secret string).
	field func(c *Config) any
	// check says what is wrong with the key's value (v, the field's value) in c, nil
	// when nothing is. It may look at other keys of c; each problem names the value.
	check func(c Config, v any) error
}

// EnvName is the TAGSWEEP_ environment variable of a flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// For reports whether cmd takes the flag.
func (f Flag) For(cmd string) bool { return slices.Contains(f.Commands, cmd) }

// DefaultFor is the flag's default value for cmd.
func (f Flag) DefaultFor(cmd string) any {
	if d, ok := f.Defaults[cmd]; ok {
		return d
	}
	return f.Default
}

// UsageFor is the flag's usage line for cmd.
func (f Flag) UsageFor(cmd string) string {
	if u, ok := f.Usages[cmd]; ok {
		return u
	}
	return f.Usage
}

// DefaultString renders the default for cmd as a user would type it ("5", "false",
// "2m"); "" for an empty string or list.
func (f Flag) DefaultString(cmd string) string {
	switch d := f.DefaultFor(cmd).(type) {
	case nil:
		return ""
	case string:
		return d
	case []string:
		return strings.Join(d, ",")
	case time.Duration:
		return FormatDuration(d)
	default:
		return fmt.Sprint(d)
	}
}

// defaultHidden reports whether --help leaves out the default for cmd: an empty string or
// list and false say nothing. A zero number is shown, as it often means "no limit".
func (f Flag) defaultHidden(cmd string) bool {
	if d, ok := f.DefaultFor(cmd).(bool); ok {
		return !d
	}
	return f.DefaultString(cmd) == ""
}

// FormatDuration renders d without trailing zero units: 2m, not 2m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// HelpSuffix is what --help appends to the usage line: the environment
// variables and the default for cmd, e.g. "(env TAGSWEEP_TTL_DAYS, default 5)".
func (f Flag) HelpSuffix(cmd string) string {
	s := "(env " + strings.Join(f.Env, " or ")
	if !f.defaultHidden(cmd) {
		s += ", default " + f.DefaultString(cmd)
	}
	return s + ")"
}

// Lookup returns the flag named name.
func Lookup(name string) (Flag, bool) {
	for _, f := range Flags() {
		if f.Name == name {
			return f, true
		}
	}
	return Flag{}, false
}

// Register defines on fs every flag that cmd takes. Flags are registered with zero
// defaults (the defaults live in the table and are applied by Load, so that a flag
// wins only when it is given); the usage carries the environment variables and
// the default for cmd.
func Register(cmd string, fs *pflag.FlagSet) {
	for _, f := range Flags() {
		if !f.For(cmd) {
			continue
		}
		usage := f.UsageFor(cmd) + " " + f.HelpSuffix(cmd)
		switch f.Kind {
		case KindString:
			fs.StringP(f.Name, f.Short, "", usage)
		case KindStrings:
			// StringArray: one value per flag, so a regexp may contain a comma.
			fs.StringArrayP(f.Name, f.Short, nil, usage)
		case KindInt:
			fs.IntP(f.Name, f.Short, 0, usage)
		case KindInt64:
			fs.Int64P(f.Name, f.Short, 0, usage)
		case KindFloat:
			fs.Float64P(f.Name, f.Short, 0, usage)
		case KindBool:
			fs.BoolP(f.Name, f.Short, false, usage)
		case KindDuration:
			fs.DurationP(f.Name, f.Short, 0, usage)
		default:
			panic(fmt.Sprintf("config: flag %s has unknown kind %q", f.Name, f.Kind))
		}
	}
}
