package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// clearEnv unsets every variable the table reads, so that the developer's own
// environment cannot leak into a test. t.Setenv restores them afterwards.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, f := range Flags() {
		for _, e := range f.Env {
			t.Setenv(e, "")
			os.Unsetenv(e)
		}
	}
}

func flagSet(t *testing.T, cmd string, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	Register(cmd, fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q) error = %v", args, err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tagsweep") // no extension, like a mounted ConfigMap key
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaults(t *testing.T) {
	clearEnv(t)
	c, err := Decode(CmdCoordinator, flagSet(t, CmdCoordinator))
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ttl-days", c.TTLDays, 5},
		{"nats-url", c.NATSURL, DefaultNATSURL},
		{"prune-regex", c.PruneRegex, DefaultPruneRegex},
		{"tag-timezone", c.TagTimezone, "UTC"},
		{"shards", c.Shards, 0},
		{"ack-wait", c.AckWait, 2 * time.Minute},
		{"max-deliver", c.MaxDeliver, 5},
		{"http-addr", c.HTTPAddr, ":8080"},
		{"confirm", c.Confirm, false},
		{"ttl-days given", c.Given("ttl-days"), false},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("Load() %s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// Per-command default: run serves HTTP only when asked.
	r, err := Decode(CmdRun, flagSet(t, CmdRun))
	if err != nil {
		t.Fatalf("Load(run) error = %v", err)
	}
	if r.HTTPAddr != "" || r.Workers != 4 || r.Demo.Tags != 20000 || r.PageSize != 100 || r.SplitAfter != 2*time.Minute {
		t.Errorf("Load(run) http-addr, workers, demo-tags, page-size, split-after = %q, %d, %d, %d, %s; want \"\", 4, 20000, 100, 2m0s",
			r.HTTPAddr, r.Workers, r.Demo.Tags, r.PageSize, r.SplitAfter)
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := "ttl-days: 7\npage-size: 70\nmax-deliver: 7\nrepository: [file/one, file/two]\nregistry: file.example\n"
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantTTL   int
		wantPage  int
		wantDel   int
		wantRepos []string
		wantReg   string
	}{
		{name: "file beats default", wantTTL: 7, wantPage: 70, wantDel: 7,
			wantRepos: []string{"file/one", "file/two"}, wantReg: "file.example"},
		{name: "env beats file",
			env:     map[string]string{"TAGSWEEP_TTL_DAYS": "8", "TAGSWEEP_REPOSITORY": "env/one, env/two", "TAGSWEEP_REGISTRY": "env.example"},
			wantTTL: 8, wantPage: 70, wantDel: 7, wantRepos: []string{"env/one", "env/two"}, wantReg: "env.example"},
		{name: "flag beats env",
			args:    []string{"--ttl-days", "9", "--repository", "flag/one", "--repository", "flag/two", "--page-size", "90"},
			env:     map[string]string{"TAGSWEEP_TTL_DAYS": "8", "TAGSWEEP_REPOSITORY": "env/one", "TAGSWEEP_PAGE_SIZE": "80"},
			wantTTL: 9, wantPage: 90, wantDel: 7, wantRepos: []string{"flag/one", "flag/two"}, wantReg: "file.example"},
		{name: "negative flag value", args: []string{"--ttl-days", "-1"},
			wantTTL: -1, wantPage: 70, wantDel: 7, wantRepos: []string{"file/one", "file/two"}, wantReg: "file.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("TAGSWEEP_CONFIG", writeFile(t, file))
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Decode(CmdRun, flagSet(t, CmdRun, tc.args...))
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if c.TTLDays != tc.wantTTL || c.PageSize != tc.wantPage || c.MaxDeliver != tc.wantDel || c.Registry != tc.wantReg {
				t.Errorf("Load() ttl-days, page-size, max-deliver, registry = %d, %d, %d, %q; want %d, %d, %d, %q",
					c.TTLDays, c.PageSize, c.MaxDeliver, c.Registry, tc.wantTTL, tc.wantPage, tc.wantDel, tc.wantReg)
			}
			if !slices.Equal(c.Repositories, tc.wantRepos) {
				t.Errorf("Load() repository = %q, want %q", c.Repositories, tc.wantRepos)
			}
			if !c.Given("ttl-days") {
				t.Errorf("Load() given(ttl-days) = false, want true (ttl-days is in the file)")
			}
		})
	}
}

func TestLoadFlagConfigFile(t *testing.T) {
	clearEnv(t)
	t.Setenv("TAGSWEEP_CONFIG", writeFile(t, "ttl-days: 1\n"))
	other := writeFile(t, "ttl-days: 2\nkeep-regex:\n  - '^a{1,3}$'\n  - ^keep_\n")
	c, err := Decode(CmdRun, flagSet(t, CmdRun, "--config", other))
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	if c.TTLDays != 2 {
		t.Errorf("Load() ttl-days = %d, want 2 (from the --config file, not TAGSWEEP_CONFIG's)", c.TTLDays)
	}
	if want := []string{"^a{1,3}$", "^keep_"}; !slices.Equal(c.KeepRegex, want) {
		t.Errorf("Load() keep-regex = %q, want %q", c.KeepRegex, want)
	}
}

func TestLoadListsKeepCommas(t *testing.T) {
	clearEnv(t)
	t.Setenv("TAGSWEEP_KEEP_REGEX", "^a{1,3}$\n^b,c$\n")
	c, err := Decode(CmdRun, flagSet(t, CmdRun))
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	if want := []string{"^a{1,3}$", "^b,c$"}; !slices.Equal(c.KeepRegex, want) {
		t.Errorf("Load() keep-regex from env = %q, want %q", c.KeepRegex, want)
	}
	c, err = Decode(CmdRun, flagSet(t, CmdRun, "--keep-regex", "^x{1,2}$", "--keep-regex", "^y$"))
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	if want := []string{"^x{1,2}$", "^y$"}; !slices.Equal(c.KeepRegex, want) {
		t.Errorf("Load() keep-regex from flags = %q, want %q", c.KeepRegex, want)
	}
}

// TestEmptyPatternsRefused: an empty keep pattern, prune pattern or time zone, and an empty
// value of a worker's floor (registry, repositories, minimum TTL) is refused wherever it is
// given, never dropped or replaced by the default (an unset variable in a Job spec would
// otherwise remove a protection).
func TestEmptyPatternsRefused(t *testing.T) {
	tests := []struct {
		name string
		cmd  string // default coordinator
		env  map[string]string
		args []string
		file string
		want []string // each must appear in the error
	}{
		{name: "keep flag", args: []string{"--keep-regex", ""}, want: []string{"--keep-regex: an empty item: remove it or give a value"}},
		{name: "keep flag among others", args: []string{"--keep-regex", "^a$", "--keep-regex", " "},
			want: []string{"--keep-regex: an empty item: remove it or give a value"}},
		{name: "keep env", env: map[string]string{"TAGSWEEP_KEEP_REGEX": ""}, want: []string{"TAGSWEEP_KEEP_REGEX: an empty item: remove it or give a value"}},
		{name: "keep env empty line", env: map[string]string{"TAGSWEEP_KEEP_REGEX": "\n^a$\n"}, want: []string{"TAGSWEEP_KEEP_REGEX"}},
		{name: "keep file string", file: "keep-regex: ''\n", want: []string{": keep-regex: an empty item: remove it or give a value"}},
		{name: "keep file null", file: "keep-regex:\n", want: []string{": keep-regex: an empty item: remove it or give a value"}},
		{name: "keep file item", file: "keep-regex: ['^a$', '']\n", want: []string{": keep-regex: an empty item: remove it or give a value"}},
		{name: "prune flag", args: []string{"--prune-regex", ""}, want: []string{"--prune-regex: empty: remove it or give a value"}},
		{name: "prune env", env: map[string]string{"TAGSWEEP_PRUNE_REGEX": ""}, want: []string{"TAGSWEEP_PRUNE_REGEX: empty: remove it or give a value"}},
		{name: "prune file", file: "prune-regex: ''\n", want: []string{": prune-regex: empty: remove it or give a value"}},
		{name: "zone env", env: map[string]string{"TAGSWEEP_TAG_TIMEZONE": " "}, want: []string{"TAGSWEEP_TAG_TIMEZONE: empty: remove it or give a value"}},
		{name: "all at once", args: []string{"--keep-regex", ""}, env: map[string]string{"TAGSWEEP_PRUNE_REGEX": ""},
			file: "tag-timezone: ''\n", want: []string{"--keep-regex: an empty item", "TAGSWEEP_PRUNE_REGEX: empty", ": tag-timezone: empty"}},
		{name: "overridden still refused", args: []string{"--prune-regex", "^(\\d{14})_prune_"},
			env: map[string]string{"TAGSWEEP_PRUNE_REGEX": ""}, want: []string{"TAGSWEEP_PRUNE_REGEX"}},
		// Not empty: an explicit empty list says "no keep patterns", and a value written as a
		// YAML block ends in a newline.
		{name: "worker min-ttl env", cmd: CmdWorker, env: map[string]string{"TAGSWEEP_MIN_TTL": ""},
			want: []string{"TAGSWEEP_MIN_TTL: empty: remove it or give a value"}},
		{name: "worker registry env", cmd: CmdWorker, env: map[string]string{"TAGSWEEP_REGISTRY": ""},
			want: []string{"TAGSWEEP_REGISTRY: empty: remove it or give a value"}},
		{name: "worker repository env trailing comma", cmd: CmdWorker, env: map[string]string{"TAGSWEEP_REPOSITORY": "a/b,"},
			want: []string{"TAGSWEEP_REPOSITORY: an empty item: remove it or give a value"}},
		{name: "keep file empty list", file: "keep-regex: []\n"},
		{name: "keep env trailing newline", env: map[string]string{"TAGSWEEP_KEEP_REGEX": "^a$\n^b$\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"--registry", "quay.io", "--repository", "a/b"}, tc.args...)
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, tc.file))
			}
			cmd := cmp.Or(tc.cmd, CmdCoordinator)
			_, err := Load(cmd, flagSet(t, cmd, args...))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Load() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load() = nil, want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() = %v, want it to contain %q", err, w)
				}
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != len(tc.want) {
				t.Errorf("Load() = %d problems, want %d, each empty value once:\n%v", len(lines), len(tc.want), err)
			}
		})
	}
}

func TestLoadQuayEnv(t *testing.T) {
	dc := writeFile(t, "{}")
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantToken string
		wantDC    string
	}{
		{name: "existing pruner's names", env: map[string]string{"QUAY_OAUTH_TOKEN": "quay-secret", "QUAY_DOCKERCONFIGJSON_PATH": dc},
			wantToken: "quay-secret", wantDC: dc},
		{name: "TAGSWEEP_ names win", env: map[string]string{"QUAY_OAUTH_TOKEN": "quay-secret", "TAGSWEEP_TOKEN": "ts-secret",
			"QUAY_DOCKERCONFIGJSON_PATH": "/nope", "TAGSWEEP_DOCKER_CONFIG": dc},
			wantToken: "ts-secret", wantDC: dc},
		{name: "flag wins", env: map[string]string{"QUAY_OAUTH_TOKEN": "quay-secret"}, args: []string{"--token", "flag-secret"},
			wantToken: "flag-secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Decode(CmdWorker, flagSet(t, CmdWorker, tc.args...))
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if c.Token.Reveal() != tc.wantToken || c.DockerConfig != tc.wantDC {
				t.Errorf("Load() token, docker-config = %q, %q; want %q, %q", c.Token.Reveal(), c.DockerConfig, tc.wantToken, tc.wantDC)
			}
		})
	}
}

func TestLoadStrictFile(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // substrings of the error
	}{
		{name: "typo names the key and the fix", file: "ttl-dayz: 5\nrepositry: [a/b]\n",
			want: []string{`"ttl-dayz"`, `did you mean "ttl-days"`, `"repositry"`, `did you mean "repository"`}},
		{name: "nested key", file: "nats:\n  url: nats://x\n", want: []string{`"nats.url"`}},
		{name: "wrong type", file: "ttl-days: five\n", want: []string{"ttl-days"}},
		{name: "not yaml", file: "ttl-days: [\n", want: []string{"reading config file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			path := writeFile(t, tc.file)
			_, err := Decode(CmdCoordinator, flagSet(t, CmdCoordinator, "--config", path))
			if err == nil {
				t.Fatalf("Decode(%q) error = nil, want an error", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Decode(%q) error = %v, want it to mention %s", tc.file, err, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		clearEnv(t)
		_, err := Decode(CmdCoordinator, flagSet(t, CmdCoordinator, "--config", filepath.Join(t.TempDir(), "nope.yaml")))
		if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
			t.Errorf("Decode(missing file) error = %v, want one naming the file", err)
		}
	})
	t.Run("keys of other commands are accepted", func(t *testing.T) {
		clearEnv(t)
		path := writeFile(t, "workers: 8\nslots: 2\nregistry: quay.io\n")
		if _, err := Decode(CmdCoordinator, flagSet(t, CmdCoordinator, "--config", path)); err != nil {
			t.Errorf("Decode(shared file) error = %v, want nil", err)
		}
	})
}

func TestLoadEnvWrongType(t *testing.T) {
	clearEnv(t)
	t.Setenv("TAGSWEEP_MAX_DELIVER", "lots")
	_, err := Decode(CmdWorker, flagSet(t, CmdWorker))
	if err == nil || !strings.Contains(err.Error(), `TAGSWEEP_MAX_DELIVER: "lots" is not a whole number`) {
		t.Errorf("Decode() error = %v, want one naming TAGSWEEP_MAX_DELIVER and its value", err)
	}
}

func validCoordinator() Config {
	return Config{
		Command: CmdCoordinator, LogFormat: "auto", LogLevel: "info", NATSURL: DefaultNATSURL,
		Registry: "quay.io", Repositories: []string{"openshift/ci"}, TTLDays: 5,
		PruneRegex: DefaultPruneRegex, TagTimezone: "UTC", PageSize: 100, AckWait: 2 * time.Minute,
		MaxDeliver: 5, NATSReplicas: 1, HTTPAddr: ":8080",
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // every flag that must be named; empty = valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "registry with port", mutate: func(c *Config) { c.Registry = "127.0.0.1:5000" }},
		{name: "ipv6 registry", mutate: func(c *Config) { c.Registry = "[::1]:5000" }},
		{name: "ttl alone", mutate: func(c *Config) { c.TTL = "5d12h" }},
		{name: "ttl-days -1", mutate: func(c *Config) { c.TTLDays = -1 }},
		{name: "every problem at once", mutate: func(c *Config) {
			c.Registry = ""
			c.Repositories = []string{"OpenShift/CI", "a/b", "a/b"}
			c.TTLDays = -2
			c.TTL = "5 days"
			c.origins = map[string]origin{"ttl-days": {from: fromFlag}}
			c.Shards = -1
			c.PruneRegex = "_prune_("
			c.KeepRegex = []string{"[z-a]"}
			c.TagTimezone = "Mars/Olympus"
			c.MaxDeletes = -1
			c.RunID = "a.b"
			c.LogFormat = "xml"
			c.LogLevel = "loud"
			c.AckWait = 0
			c.MaxDeliver = 0
			c.NATSReplicas = 7
			c.HTTPAddr = "8080"
			c.NATSURL = ""
		}, want: []string{"--registry", "--repository: \"OpenShift/CI\"", "--repository: \"a/b\" given twice",
			"--ttl-days", "--ttl: \"5 days\" conflicts with --ttl-days", "--shards", "--prune-regex", "--keep-regex",
			"--tag-timezone", "--max-deletes", "--run-id", "--log-format", "--log-level",
			"--ack-wait", "--max-deliver", "--nats-replicas", "--http-addr", "--nats-url"}},
		{name: "registry with scheme", mutate: func(c *Config) { c.Registry = "https://quay.io" }, want: []string{"--registry", "scheme"}},
		{name: "registry with path", mutate: func(c *Config) { c.Registry = "quay.io/openshift" }, want: []string{"--registry"}},
		{name: "registry bad port", mutate: func(c *Config) { c.Registry = "quay.io:99999" }, want: []string{"--registry", "port"}},
		{name: "repository with tag", mutate: func(c *Config) { c.Repositories = []string{"openshift/ci:latest"} }, want: []string{"--repository"}},
		{name: "no repository", mutate: func(c *Config) { c.Repositories = nil }, want: []string{"--repository: required"}},
		{name: "prune regex not anchored", mutate: func(c *Config) { c.PruneRegex = `(\d{14})_prune_` }, want: []string{"--prune-regex"}},
		{name: "local zone", mutate: func(c *Config) { c.TagTimezone = "Local" }, want: []string{"--tag-timezone"}},
		{name: "missing docker config", mutate: func(c *Config) { c.DockerConfig = "/nonexistent/config.json" }, want: []string{"--docker-config"}},
		{name: "auth hosts", mutate: func(c *Config) { c.AuthHosts = []string{"auth.example.com", "127.0.0.2:8443"} }},
		{name: "auth host with scheme", mutate: func(c *Config) { c.AuthHosts = []string{"auth.example.com", "https://auth.example.com/token"} },
			want: []string{"--auth-host: \"https://auth.example.com/token\" has a scheme"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validCoordinator()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateCommands(t *testing.T) {
	existing := writeFile(t, "x")
	tests := []struct {
		name string
		c    Config
		want []string
	}{
		{name: "run demo needs no registry", c: Config{Command: CmdRun, LogFormat: "text", LogLevel: "debug", Demo: Demo{Enabled: true, Tags: 10, Days: 1},
			TTLDays: 5, Shards: 64, PruneRegex: DefaultPruneRegex, TagTimezone: "UTC", PageSize: 100, Workers: 1,
			Slots: 1, DeleteConc: 1, AckWait: time.Minute, MaxDeliver: 1}},
		{name: "run demo refuses a registry", c: Config{Command: CmdRun, LogFormat: "text", LogLevel: "debug", Demo: Demo{Enabled: true},
			Registry: "quay.io", TTLDays: 5, Shards: 64, PruneRegex: DefaultPruneRegex, TagTimezone: "UTC", PageSize: 100,
			Workers: 0, Slots: 0, DeleteConc: 0, MaxRPS: -1, AckWait: time.Minute, MaxDeliver: 1},
			want: []string{"--registry", "--workers", "--slots", "--delete-concurrency", "--max-rps", "--demo-tags", "--demo-days"}},
		{name: "worker limits", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn", NATSURL: DefaultNATSURL, PageSize: 1001,
			Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 1, SplitAfter: -time.Second},
			want: []string{"--page-size", "--split-after"}},
		{name: "worker", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn", NATSURL: DefaultNATSURL, PageSize: 100,
			Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 3}},
		{name: "worker ignores pruning keys", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn", NATSURL: DefaultNATSURL,
			PageSize: 100, Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 3, TTLDays: -9, Shards: -1}},
		{name: "worker with a token needs a registry", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn",
			NATSURL: DefaultNATSURL, PageSize: 100, Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5,
			NATSReplicas: 3, Token: "t"}, want: []string{"--registry: required with --token"}},
		{name: "worker with a token and a registry", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn",
			NATSURL: DefaultNATSURL, PageSize: 100, Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5,
			NATSReplicas: 3, Token: "t", Registry: "quay.io"}},
		{name: "status", c: Config{Command: CmdStatus, LogFormat: "auto", LogLevel: "info", NATSURL: DefaultNATSURL, AckWait: time.Minute}},
		{name: "worker floor and nats trust", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn",
			NATSURL: DefaultNATSURL, PageSize: 100, Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 3,
			Repositories: []string{"openshift/ci"}, MinTTL: "3d",
			NATS: NATSTrust{User: "tagsweep-worker", Password: "p", CA: existing, Cert: existing, Key: existing}}},
		{name: "nats trust problems", c: Config{Command: CmdStatus, LogFormat: "auto", LogLevel: "info", NATSURL: DefaultNATSURL, AckWait: time.Minute,
			NATS: NATSTrust{Creds: existing, Token: "t", TokenFile: "/nonexistent/token", Password: "p", CA: "/nonexistent/ca.pem", Cert: existing}},
			want: []string{"--nats-token: conflicts with --nats-creds", "--nats-token-file: \"/nonexistent/token\": no such file",
				"--nats-token-file: conflicts with --nats-creds", "--nats-password: given without --nats-user",
				"--nats-ca: \"/nonexistent/ca.pem\"", "--nats-cert: given without --nats-key"}},
		{name: "worker floor problems", c: Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn",
			NATSURL: DefaultNATSURL, PageSize: 100, Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 3,
			Repositories: []string{"OpenShift/CI"}, MinTTL: "3 days"},
			want: []string{"--repository: \"OpenShift/CI\"", "--min-ttl: \"3 days\""}},
		{name: "sim", c: Config{Command: CmdSim, LogFormat: "auto", LogLevel: "info", Repositories: []string{"openshift/ci"},
			Sim: Sim{Addr: "nowhere", Tags: -1, Days: 0, Latency: -time.Second}},
			want: []string{"--addr", "--tags", "--days", "--latency"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if len(tc.want) > 0 && err == nil {
				t.Fatalf("Validate() = nil, want errors naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestTTLDuration(t *testing.T) {
	tests := []struct {
		c    Config
		want time.Duration
	}{
		{Config{TTLDays: 5}, 5 * 24 * time.Hour},
		{Config{TTLDays: 0}, 0},
		{Config{TTLDays: -1}, 0},
		{Config{TTLDays: 5, TTL: "36h"}, 36 * time.Hour},
		{Config{TTL: "2d12h"}, 60 * time.Hour},
	}
	for _, tc := range tests {
		got, err := tc.c.TTLDuration()
		if err != nil || got != tc.want {
			t.Errorf("Config{TTLDays: %d, TTL: %q}.TTLDuration() = %v, %v; want %v, nil", tc.c.TTLDays, tc.c.TTL, got, err, tc.want)
		}
	}
}

func TestRedaction(t *testing.T) {
	const token = "s3cr3t-t0ken"
	const pass = "natspass"
	c := validCoordinator()
	c.Token = token
	c.NATSURL = "nats://user:" + pass + "@nats-0:4222,nats://" + pass + "@nats-1:4222"
	const natsPassword, natsToken = "nats-user-password-x1", "nats-auth-token-y2"
	c.NATS.User, c.NATS.Password, c.NATS.Token = "tagsweep", natsPassword, natsToken

	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	log.Info("config", "config", c)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("config", "config", c, "token", c.Token)

	jsonOut, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"slog":          logBuf.String(),
		"%v":            fmt.Sprintf("%v", c),
		"%+v":           fmt.Sprintf("%+v", c),
		"%#v":           fmt.Sprintf("%#v", c),
		"%s token":      fmt.Sprintf("%s", c.Token),
		"%q token":      fmt.Sprintf("%q", c.Token),
		"%x token":      fmt.Sprintf("%x", c.Token),
		"json":          string(jsonOut),
		"Redacted %+v":  fmt.Sprintf("%+v", c.Redacted()),
		"Redacted nats": c.Redacted().NATSURL,
	}
	for name, out := range outputs {
		if strings.Contains(out, token) || strings.Contains(out, pass) || strings.Contains(out, natsPassword) || strings.Contains(out, natsToken) {
			t.Errorf("%s output shows a secret: %s", name, out)
		}
	}
	if !strings.Contains(logBuf.String(), "REDACTED") {
		t.Errorf("slog output = %s, want REDACTED in place of the token", logBuf.String())
	}
	if !strings.Contains(logBuf.String(), "openshift/ci") {
		t.Errorf("slog output = %s, want the non-secret keys shown", logBuf.String())
	}
	if c.Token.Reveal() != token {
		t.Errorf("Reveal() = %q, want the token", c.Token.Reveal())
	}
	if got := c.Redacted().NATSURL; !strings.Contains(got, "user:REDACTED@nats-0") {
		t.Errorf("Redacted().NATSURL = %q, want the user kept and the password hidden", got)
	}
}

func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Flags() {
		if seen[f.Name] {
			t.Errorf("flag %s is in the table twice", f.Name)
		}
		seen[f.Name] = true
		if f.Usage == "" || len(f.Commands) == 0 || len(f.Env) == 0 || f.Env[0] != EnvName(f.Name) {
			t.Errorf("flag %s: usage, commands or env missing (%+v)", f.Name, f)
		}
		if f.field == nil {
			t.Errorf("flag %s has no Config field", f.Name)
		} else {
			for _, cmd := range f.Commands {
				if d := f.DefaultFor(cmd); d != nil {
					if err := set(f.field(&Config{}), d); err != nil {
						t.Errorf("flag %s: its %s default does not fit its field: %v", f.Name, cmd, err)
					}
				}
			}
		}
		for _, cmd := range f.Commands {
			if !slices.Contains(Commands(), cmd) {
				t.Errorf("flag %s: unknown command %q", f.Name, cmd)
			}
		}
	}
	if got := EnvName("ttl-days"); got != "TAGSWEEP_TTL_DAYS" {
		t.Errorf("EnvName(ttl-days) = %q, want TAGSWEEP_TTL_DAYS", got)
	}
	f, _ := Lookup("ttl-days")
	if got, want := f.HelpSuffix(CmdRun), "(env TAGSWEEP_TTL_DAYS, default 5)"; got != want {
		t.Errorf("HelpSuffix() = %q, want %q", got, want)
	}
	f, _ = Lookup("token")
	if got, want := f.HelpSuffix(CmdRun), "(env TAGSWEEP_TOKEN or QUAY_OAUTH_TOKEN)"; got != want {
		t.Errorf("HelpSuffix() = %q, want %q", got, want)
	}
}

func TestRegisterHelp(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	Register(CmdRun, fs)
	help := fs.FlagUsages()
	for _, want := range []string{"--ttl-days N", "(env TAGSWEEP_TTL_DAYS, default 5)", "--demo-latency", "default 5ms"} {
		if !strings.Contains(help, want) {
			t.Errorf("run --help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "--nats-url") {
		t.Errorf("run --help shows --nats-url, which run does not take")
	}
	if strings.Contains(help, "(default ") {
		t.Errorf("run --help has pflag's own default text next to ours:\n%s", help)
	}
}

// TestLoadEveryProblemOnce: unknown keys, values that cannot be decoded and wrong values
// are all reported in one round, each once, each naming where the value came from
// (--flag, the environment variable or file: key) and the value, in words of ours rather
// than a parser's.
func TestLoadEveryProblemOnce(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want []string // every line of the error; FILE stands for the file's path
	}{
		{name: "flag value", args: []string{"--workers", "0", "--max-deletes", "-5"},
			want: []string{"--max-deletes: -5 is negative", "--workers: 0 is below 1"}},
		{name: "environment value", env: map[string]string{"TAGSWEEP_MAX_DELETES": "-5"},
			want: []string{"TAGSWEEP_MAX_DELETES: -5 is negative"}},
		{name: "file value", file: "max-deletes: -5\n",
			want: []string{"FILE: max-deletes: -5 is negative"}},
		{name: "environment decoding", env: map[string]string{"TAGSWEEP_SPLIT_AFTER": "5x", "TAGSWEEP_TTL_DAYS": "five", "TAGSWEEP_CONFIRM": "yes please"},
			want: []string{`TAGSWEEP_TTL_DAYS: "five" is not a whole number`, `TAGSWEEP_CONFIRM: "yes please" is not true or false`,
				`TAGSWEEP_SPLIT_AFTER: "5x" is not a duration such as 90s, 2m or 1h30m`}},
		{name: "file decoding", file: "ttl-days: five\nsplit-after: 120\nmax-rps: fast\nkeep-regex: {a: b}\n",
			want: []string{`FILE: ttl-days: "five" is not a whole number`,
				"FILE: keep-regex: map[a:b] is not a list of values", `FILE: max-rps: "fast" is not a number`, "FILE: split-after: 120 has no unit: give a duration such as 90s, 2m or 1h30m"}},
		{name: "the existing pruner's variable", env: map[string]string{"QUAY_DOCKERCONFIGJSON_PATH": "/nonexistent/auth.json"},
			want: []string{`QUAY_DOCKERCONFIGJSON_PATH: "/nonexistent/auth.json": no such file or directory`}},
		{name: "all three kinds from all three sources at once",
			args: []string{"--slots", "0", "--ttl", "36h"},
			env:  map[string]string{"TAGSWEEP_ACK_WAIT": "soon", "TAGSWEEP_PAGE_SIZE": "5000"},
			file: "ttl-dayz: 3\nttl-days: 3\nmax-deliver: many\ndelete-concurrency: 0\n",
			want: []string{`FILE: unknown key "ttl-dayz" (did you mean "ttl-days"?)`,
				`TAGSWEEP_ACK_WAIT: "soon" is not a duration such as 90s, 2m or 1h30m`,
				`FILE: max-deliver: "many" is not a whole number`,
				`--ttl: "36h" conflicts with FILE: ttl-days: give one of them`,
				"TAGSWEEP_PAGE_SIZE: 5000 is not between 1 and 1000",
				"--slots: 0 is below 1",
				"FILE: delete-concurrency: 0 is below 1"}},
		{name: "a pattern that is no regular expression", env: map[string]string{"TAGSWEEP_KEEP_REGEX": "[z-a"},
			want: []string{"TAGSWEEP_KEEP_REGEX: keep pattern 0 \"[z-a\": not a regular expression: invalid character class range: `z-a`"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("TAGSWEEP_REGISTRY", "quay.io")
			t.Setenv("TAGSWEEP_REPOSITORY", "openshift/ci")
			var path string
			if tc.file != "" {
				path = writeFile(t, tc.file)
				t.Setenv("TAGSWEEP_CONFIG", path)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load(CmdRun, flagSet(t, CmdRun, tc.args...))
			if err == nil {
				t.Fatalf("Load() = nil, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = strings.ReplaceAll(w, "FILE", path)
			}
			if !slices.Equal(got, want) {
				t.Errorf("Load() error lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for _, raw := range []string{"strconv", "time: ", "unknown unit", "'", "cannot parse", "error parsing"} {
				if strings.Contains(err.Error(), raw) {
					t.Errorf("Load() error shows a parser's text %q:\n%v", raw, err)
				}
			}
		})
	}
}

// TestValidateReport: a report that could not be written at the end of the run is
// refused before it starts.
func TestValidateReport(t *testing.T) {
	dir := t.TempDir()
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string // "" = accepted
	}{
		{filepath.Join(dir, "report.json"), ""},
		{notDir, ""}, // an existing file is replaced
		{filepath.Join(dir, "missing", "report.json"), "does not exist"},
		{filepath.Join(notDir, "report.json"), "is not a directory"},
		{dir, "is a directory"},
		{filepath.Join(readOnly, "report.json"), "cannot be written"},
	}
	for _, tc := range tests {
		c := validCoordinator()
		c.Report = tc.path
		if tc.want == "cannot be written" && os.Geteuid() == 0 {
			continue // root writes anywhere
		}
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(report %s) = %v, want nil", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "--report: "+strconv.Quote(tc.path)) ||
			!strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(report %s) = %v, want an error naming --report, the path and %q", tc.path, err, tc.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("Validate left files behind in the report's directory: %v", entries)
	}
}

// TestValidateRetention: the audit stream's age and size and the records' life have
// floors below which a run could lose what it still needs; 0 lifts a cap.
func TestValidateRetention(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" = valid
	}{
		{[]string{"--audit-max-age", "720h", "--audit-max-bytes", "8589934592", "--records-max-age", "336h"}, ""},
		{[]string{"--audit-max-bytes", "0", "--records-max-age", "0"}, ""},
		{[]string{"--audit-max-age", "30m"}, "--audit-max-age: 30m is below 1h"},
		{[]string{"--audit-max-bytes", "4096"}, "--audit-max-bytes: 4096 is below 1048576"},
		{[]string{"--records-max-age", "24h"}, "--records-max-age: 24h is below 168h"},
		{[]string{"--records-max-age", "-1h"}, "--records-max-age: -1h is below 168h"},
	}
	for _, tc := range tests {
		clearEnv(t)
		args := append([]string{"--registry", "quay.io"}, tc.args...)
		_, err := Load(CmdWorker, flagSet(t, CmdWorker, args...))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Load(%q) = %v, want nil", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Load(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
