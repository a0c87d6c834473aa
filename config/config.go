// Package config is tagsweep's configuration: one table of every key (Flags), each row
// holding the key's flag, environment variables, default, help, the Config field it
// fills and the check of its value; loading from flags, environment and a YAML file
// (Load); and Validate, a loop over the rows that reports every problem at once, each
// naming where its value came from. Adding a key is one row and one field. Only this
// package and cmd/ import viper.
package config

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Config is the typed configuration of one command. Fields hold plain Go values; which
// of them a command reads, and the key of each, is given by the flag table (Flags). The
// keys that only one command takes are grouped under that command (Demo, Sim, Status,
// Stop, Restore, Ls).
type Config struct {
	// Command is the command this configuration was loaded for.
	Command string
	// origins says where each key's value came from (Load fills it in); a key without
	// an entry was defaulted.
	origins map[string]origin

	File      string
	LogFormat string
	LogLevel  string
	NATSURL   string
	// NATS is how the command authenticates to NATS and verifies its servers.
	NATS NATSTrust

	Registry     string
	Repositories []string
	TTLDays      int
	TTL          string
	Confirm      bool
	PlainHTTP    bool
	Report       string
	Output       string
	OutputFile   string
	RunID        string
	Shards       int
	PruneRegex   string
	KeepRegex    []string
	TagTimezone  string
	MaxDeletes   int64
	MaxClockSkew time.Duration
	PageSize     int
	DockerConfig string
	Token        Secret
	AuthHosts    []string
	MinTTL       string
	MaxRPS       float64
	DeleteAPI    string
	Preserve     bool
	RepoAliases  []string
	Workers      int
	Slots        int
	DeleteConc   int
	SplitAfter   time.Duration
	SplitIdle    bool
	AckWait      time.Duration
	MaxDeliver   int
	NATSReplicas int

	AuditMaxAge   time.Duration
	AuditMaxBytes int64
	AuditDryRuns  bool
	RecordsMaxAge time.Duration
	DataDir       string
	HTTPAddr      string

	RecordDigests bool

	// Demo is what run --demo serves.
	Demo Demo
	// Sim is the simulated registry of the sim command.
	Sim Sim
	// Status is what the status command shows.
	Status Status
	// Stop is how the stop command stops a run.
	Stop Stop
	// Restore is what the restore command puts back.
	Restore Restore
	// Ls is what the ls command prints besides its inventory.
	Ls Ls
}

// NATSTrust is how a command authenticates to NATS (at most one of: a credentials file, an
// nkey seed file, a user and password, a token) and the TLS it speaks: the CA that signs the
// servers' certificates and a client certificate and key. Zero values mean none.
type NATSTrust struct {
	Creds     string // credentials file (user JWT and nkey seed)
	NKey      string // nkey seed file
	User      string
	Password  Secret
	Token     Secret
	TokenFile string // file holding the token
	CA        string // PEM file of the CA(s) the servers' certificates must chain to
	Cert, Key string // PEM files of the client certificate and its key
}

// Demo configures run --demo: an in-process simulated registry holding a generated
// namespace.
type Demo struct {
	Enabled bool
	Tags    int
	Days    int
	Latency time.Duration
}

// Sim configures the simulated registry the sim command serves.
type Sim struct {
	Addr    string
	Tags    int
	Days    int
	Latency time.Duration
	Seed    int64
	Admin   bool
}

// Status configures the status command.
type Status struct {
	States     []string      // --state: show only runs, or shards, in these states (see StateList)
	StaleAfter time.Duration // a running shard not written for this long is stale; 0 = the ledger's default
}

// Stop configures the stop command.
type Stop struct {
	Reason string        // recorded in the run; empty = stopped by an operator
	Wait   time.Duration // how long to wait for the run to be marked stopped; 0 = do not wait
}

// Restore configures the restore command.
type Restore struct {
	TagRegex    string // restore only the deleted tags that match; empty = all
	Concurrency int    // tags restored at once
}

// Ls configures the ls command.
type Ls struct {
	Names bool // print every tag name
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

// Redacted returns a copy of c that is safe to print: the token and any password in
// the NATS URL are replaced by REDACTED.
func (c Config) Redacted() Config {
	r := c
	r.Token = Secret(c.Token.mask())
	r.NATS.Password = Secret(c.NATS.Password.mask())
	r.NATS.Token = Secret(c.NATS.Token.mask())
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
	var attrs []slog.Attr
	for _, f := range Flags() {
		if !f.For(c.Command) && c.Command != "" {
			continue
		}
		attrs = append(attrs, slog.Any(f.Name, reflect.ValueOf(f.field(&r)).Elem().Interface()))
	}
	return slog.GroupValue(attrs...)
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

// AuditOutput is where and how `audit` writes its export: the format (jsonl or csv) and the
// file ("" = stdout). --output once took the file; a value of --output that is not a format is
// still read as the file, and deprecated says so, for a warning.
func (c Config) AuditOutput() (format, file string, deprecated bool) {
	switch c.Output {
	case "", OutputJSONL, OutputCSV:
		return cmp.Or(c.Output, OutputJSONL), c.OutputFile, false
	}
	return OutputJSONL, c.Output, true
}

// StateList is --state with comma-separated items split.
func (s Status) StateList() []string {
	var out []string
	for _, s := range s.States {
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}
