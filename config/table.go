package config

import (
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// The commands that take a group of keys.
var (
	allPruning  = []string{CmdRun, CmdCoordinator}
	allPlanning = []string{CmdRun, CmdCoordinator, CmdLs} // the policy and the plan of a run
	allWorking  = []string{CmdRun, CmdWorker, CmdLs}
	allRegistry = []string{CmdRun, CmdCoordinator, CmdWorker, CmdLs}
	allNATS     = []string{CmdRun, CmdCoordinator, CmdWorker, CmdLs}
	// natsClients are the commands that connect to an external NATS (the keys of its trust).
	natsClients = []string{CmdCoordinator, CmdWorker, CmdStatus, CmdAudit, CmdStop, CmdRestore, CmdLs}
	allCommands = []string{CmdRun, CmdCoordinator, CmdWorker, CmdStatus, CmdAudit, CmdStop, CmdRestore, CmdSim, CmdLs}
)

// Output formats (--output).
const (
	OutputTable = "table" // status: a table that fits 120 columns
	OutputWide  = "wide"  // status: every column, nothing cut short
	OutputJSON  = "json"  // status: one JSON document (docs/operations.md)
	OutputJSONL = "jsonl" // audit: one JSON object per line
	OutputCSV   = "csv"   // audit: comma-separated values with a header line
)

// Default values that other code and the docs refer to.
const (
	DefaultNATSURL    = "nats://127.0.0.1:4222"
	DefaultPruneRegex = `^(\d{14})_prune_`
	DefaultHTTPAddr   = ":8080"
)

// Flags returns the table of every configuration key: the single source that flag
// registration, environment binding, --help text and docs/configuration.md come from.
// The returned slice is a fresh copy. A key that names no environment variables of its
// own is read from TAGSWEEP_<NAME>.
func Flags() []Flag {
	t := flagTable()
	for i := range t {
		if len(t[i].Env) == 0 {
			t[i].Env = []string{EnvName(t[i].Name)}
		}
	}
	return t
}

// flagTable is every configuration key, one row each, in --help order.
func flagTable() []Flag {
	return []Flag{
		{Name: "config", field: func(c *Config) any { return &c.File },
			Kind: KindString, Commands: allCommands,
			Usage: "YAML configuration `file`; its keys are the flag names (ttl-days: 5, repository: [openshift/ci])"},
		{Name: "log-format", field: func(c *Config) any { return &c.LogFormat }, check: oneOf("auto", "text", "json"),
			Kind: KindString, Default: "auto", Commands: allCommands,
			Usage: "log `format`: auto (text on a terminal, JSON otherwise), text or json"},
		{Name: "log-level", field: func(c *Config) any { return &c.LogLevel }, check: checkLogLevel,
			Kind: KindString, Default: "info", Commands: allCommands,
			Usage: "log `level`: debug, info, warn or error"},
		{Name: "nats-url", field: func(c *Config) any { return &c.NATSURL }, check: requiredUnlessLs,
			Kind: KindString, Default: DefaultNATSURL, Commands: natsClients,
			Defaults: map[string]any{CmdLs: ""},
			Usage:    "NATS server `URL`s, comma-separated (JetStream must be enabled)",
			Usages:   map[string]string{CmdLs: "NATS server `URL`s, comma-separated (JetStream must be enabled): its workers list the inventory; empty = embedded NATS and --workers workers in this process", CmdRestore: "NATS server `URL`s, comma-separated (JetStream must be enabled); used unless --data-dir is given"}},
		{Name: "nats-creds", field: func(c *Config) any { return &c.NATS.Creds }, check: natsAuth("nats-creds", checkFile),
			Kind: KindString, Commands: natsClients,
			Usage: "NATS credentials `file` (user JWT and nkey seed) to authenticate with"},
		{Name: "nats-nkey", field: func(c *Config) any { return &c.NATS.NKey }, check: natsAuth("nats-nkey", checkFile),
			Kind: KindString, Commands: natsClients,
			Usage: "NATS nkey seed `file` to authenticate with"},
		{Name: "nats-user", field: func(c *Config) any { return &c.NATS.User }, check: natsAuth("nats-user", nil),
			Kind: KindString, Commands: natsClients,
			Usage: "NATS `user` to authenticate as, with --nats-password"},
		{Name: "nats-password", field: func(c *Config) any { return &c.NATS.Password }, check: checkNATSPassword,
			Kind: KindString, Commands: natsClients, Secret: true,
			Usage: "NATS `password` of --nats-user; never logged (prefer the environment to the command line)"},
		{Name: "nats-token", field: func(c *Config) any { return &c.NATS.Token }, check: natsAuth("nats-token", nil),
			Kind: KindString, Commands: natsClients, Secret: true,
			Usage: "NATS authentication `token`; never logged (prefer the environment or --nats-token-file to the command line)"},
		{Name: "nats-token-file", field: func(c *Config) any { return &c.NATS.TokenFile }, check: natsAuth("nats-token-file", checkFile),
			Kind: KindString, Commands: natsClients,
			Usage: "`file` holding the NATS authentication token"},
		{Name: "nats-ca", field: func(c *Config) any { return &c.NATS.CA }, check: checkFile,
			Kind: KindString, Commands: natsClients,
			Usage: "PEM `file` of the CA the NATS servers' certificates must chain to; given, the connection is TLS"},
		{Name: "nats-cert", field: func(c *Config) any { return &c.NATS.Cert }, check: pairedWith("nats-key", func(c Config) string { return c.NATS.Key }),
			Kind: KindString, Commands: natsClients,
			Usage: "PEM `file` of the client certificate presented to NATS over TLS, with --nats-key"},
		{Name: "nats-key", field: func(c *Config) any { return &c.NATS.Key }, check: pairedWith("nats-cert", func(c Config) string { return c.NATS.Cert }),
			Kind: KindString, Commands: natsClients,
			Usage: "PEM `file` of the key of --nats-cert"},

		// What to prune.
		{Name: "registry", field: func(c *Config) any { return &c.Registry }, check: checkRegistry,
			Kind: KindString, Commands: append(allRegistry, CmdRestore), NoEmpty: true,
			Usage: "registry `host[:port]` to prune, without scheme or path (required unless --demo or resuming a recorded --run-id); " +
				"a worker or restore given it refuses runs against any other registry (required for them with --token)"},
		{Name: "repository", field: func(c *Config) any { return &c.Repositories }, check: checkRepositories,
			Kind: KindStrings, EnvSep: ",", Commands: []string{CmdRun, CmdCoordinator, CmdWorker, CmdSim, CmdLs}, NoEmpty: true,
			Defaults: map[string]any{CmdSim: []string{"openshift/ci"}},
			Usage:    "repository `ns/name` to prune; repeat the flag for several (comma-separated in the environment)",
			Usages: map[string]string{
				CmdSim:    "repository `ns/name` to serve, each with its own generated namespace; repeat the flag for several (comma-separated in the environment)",
				CmdWorker: "repository `ns/name` this worker may prune: it refuses the shards of any other; repeat the flag for several (comma-separated in the environment); none = any",
			}},
		{Name: "ttl-days", field: func(c *Config) any { return &c.TTLDays }, check: atLeast(-1),
			Kind: KindInt, Default: 5, Commands: allPlanning,
			Usage: "prune tags whose name is dated more than `N`×24h before the run start; -1 = every prune tag dated before the run start"},
		{Name: "ttl", field: func(c *Config) any { return &c.TTL }, check: checkTTL,
			Kind: KindString, Commands: allPlanning,
			Usage: "prune tags dated more than this `duration` before the run start (36h, 5d); conflicts with an explicitly set --ttl-days"},
		{Name: "confirm", field: func(c *Config) any { return &c.Confirm },
			Kind: KindBool, Default: false, Commands: append(allPruning, CmdRestore),
			Usage: "actually delete tags (restore: put them back); without it the run is a dry run that only counts what would be done"},
		{Name: "plain-http", field: func(c *Config) any { return &c.PlainHTTP },
			Kind: KindBool, Default: false, Commands: append(allRegistry, CmdRestore),
			Usage: "talk to the registry over plain HTTP instead of HTTPS (local registries only); a worker holding " +
				"credentials (--token, --docker-config) refuses a run that asks for plain HTTP unless it is given this too"},
		{Name: "report", field: func(c *Config) any { return &c.Report }, check: checkReport,
			Kind: KindString, Commands: append(allPruning, CmdRestore, CmdLs),
			Usage: "write the run's JSON report to this `file` at the end"},
		{Name: "output", Short: "o", field: func(c *Config) any { return &c.Output }, check: checkOutput,
			Kind: KindString, Commands: []string{CmdStatus, CmdAudit, CmdLs},
			Defaults: map[string]any{CmdStatus: OutputTable, CmdAudit: OutputJSONL, CmdLs: OutputTable},
			Usage:    "output `format`",
			Usages: map[string]string{
				CmdStatus: "output `format`: table (fits 120 columns), wide (every column in full) or json (docs/operations.md)",
				CmdLs:     "output `format` of the inventory: table or json",
				CmdAudit:  "output `format`: jsonl (one JSON object per line) or csv (with a header line); a file name here is read as --output-file (deprecated)",
			}},
		{Name: "output-file", field: func(c *Config) any { return &c.OutputFile },
			Kind: KindString, Commands: []string{CmdAudit},
			Usage: "write the export to this `file` (replaced only once the export is complete) instead of stdout"},
		{Name: "run-id", field: func(c *Config) any { return &c.RunID }, check: checkRunID,
			Kind: KindString, Commands: allPlanning,
			Usage: "`id` of the run ([A-Za-z0-9_-], at most 64); reusing the ID of an unfinished or failed run resumes it (failed shards from their cursors) with its recorded settings, and a setting given that differs from the record is refused; empty = generated"},
		{Name: "shards", field: func(c *Config) any { return &c.Shards }, check: atLeast(0),
			Kind: KindInt, Default: 0, Commands: allPlanning,
			Usage: "cut each repository into at least `N` shards where it holds that many pages of tags, sized by the tags in them; " +
				"0 = the slots of the workers (run, and ls on embedded NATS: --workers × --slots; coordinator: those the running workers registered, 32 if none)"},
		{Name: "prune-regex", field: func(c *Config) any { return &c.PruneRegex }, check: checkRule(func(p *proto.Policy, c Config) { p.PrunePattern = c.PruneRegex }),
			Kind: KindString, Default: DefaultPruneRegex, Commands: []string{CmdRun, CmdCoordinator, CmdWorker, CmdLs}, NoEmpty: true,
			Usage:  "`regexp` a prune tag matches; group 1 is its YYYYMMDDHHMMSS timestamp",
			Usages: map[string]string{CmdWorker: "the prune `regexp` this worker carries out: it refuses a run with any other"}},
		{Name: "min-ttl", field: func(c *Config) any { return &c.MinTTL }, check: checkMinTTL,
			Kind: KindString, Commands: []string{CmdWorker}, NoEmpty: true,
			Usage: "refuse a run whose cutoff is later than now minus this `duration` (36h, 5d), whatever the run record asks; empty = no floor"},
		{Name: "keep-regex", field: func(c *Config) any { return &c.KeepRegex }, check: checkRule(func(p *proto.Policy, c Config) { p.KeepPatterns = c.KeepRegex }),
			Kind: KindStrings, EnvSep: "\n", Commands: allPlanning, NoEmpty: true,
			Usage: "`regexp` of tags never to delete; repeat the flag for several (one per line in the environment)"},
		{Name: "tag-timezone", field: func(c *Config) any { return &c.TagTimezone }, check: checkRule(func(p *proto.Policy, c Config) { p.TimeZone = c.TagTimezone }),
			Kind: KindString, Default: "UTC", Commands: allPlanning, NoEmpty: true,
			Usage: "IANA time `zone` the tag timestamps are written in"},
		{Name: "max-clock-skew", field: func(c *Config) any { return &c.MaxClockSkew }, check: atLeast(time.Duration(0)),
			Kind: KindDuration, Default: 5 * time.Minute, Commands: allPruning,
			Usage: "refuse to start a run when this host's clock and the registry's Date header are more than this `duration` apart (the cutoff is fixed from this clock); 0 = do not check"},
		{Name: "max-deletes", field: func(c *Config) any { return &c.MaxDeletes }, check: atLeast(int64(0)),
			Kind: KindInt64, Default: int64(0), Commands: allPruning,
			Usage: "delete at most `N` tags in the run; a run that reaches the cap stops and fails (exit 2); 0 = no cap"},
		{Name: "preserve-payloads", field: func(c *Config) any { return &c.Preserve },
			Kind: KindBool, Default: true, Commands: allPruning,
			Usage: "preserve release payloads (rc_payload__ tags) and carry out their removal requests, as the existing pruner does"},
		{Name: "repository-alias", field: func(c *Config) any { return &c.RepoAliases }, check: checkAliases,
			Kind: KindStrings, EnvSep: ",", Commands: allPruning,
			Usage: "another `host/path` under which release payloads name a pruned repository (quay-proxy.ci.openshift.org/openshift/ci), " +
				"or host/path=repository; repeat the flag for several"},

		// How to talk to the registry.
		{Name: "page-size", field: func(c *Config) any { return &c.PageSize }, check: between(1, MaxPageSize),
			Kind: KindInt, Default: 100, Commands: allWorking,
			Usage: "`N` tags per tags/list page (its n parameter), 1 to 1000; Quay caps it at 100"},
		{Name: "docker-config", field: func(c *Config) any { return &c.DockerConfig }, check: checkFile,
			Kind: KindString, Commands: append(allRegistry, CmdRestore),
			Env:   []string{EnvName("docker-config"), "QUAY_DOCKERCONFIGJSON_PATH"},
			Usage: "docker config.json `file` holding the registry credentials"},
		{Name: "token", field: func(c *Config) any { return &c.Token },
			Kind: KindString, Commands: append(allRegistry, CmdRestore), Secret: true,
			Env:   []string{EnvName("token"), "QUAY_OAUTH_TOKEN"},
			Usage: "Quay OAuth `token`, sent to the registry as the password of the user $oauthtoken; never logged (prefer the environment to the command line)"},
		{Name: "auth-host", field: func(c *Config) any { return &c.AuthHosts }, check: checkAuthHosts,
			Kind: KindStrings, EnvSep: ",", Commands: append(allRegistry, CmdRestore),
			Usage: "`host[:port]` of a token realm other than the registry's own that may receive the registry's credentials " +
				"(without a port: the scheme's default); repeat the flag for several. By default credentials go to the --registry host alone"},
		{Name: "delete-api", field: func(c *Config) any { return &c.DeleteAPI }, check: checkDeleteAPI,
			Kind: KindString, Default: "v2", Commands: []string{CmdRun, CmdWorker},
			Usage: "`api` tags are deleted through: v2 (DELETE /v2/<repo>/manifests/<tag>) or quay-v1 " +
				"(DELETE /api/v1/repository/<repo>/tag/<tag> with --token; Quay allows it about a tenth of v2's rate)"},
		{Name: "max-rps", field: func(c *Config) any { return &c.MaxRPS }, check: atLeast(0.0),
			Kind: KindFloat, Default: 0.0, Commands: append(allWorking, CmdRestore),
			Usage: "registry requests per second (`rate`) per worker process; 0 = unlimited"},

		// Workers.
		{Name: "workers", field: func(c *Config) any { return &c.Workers }, check: atLeast(1),
			Kind: KindInt, Default: 4, Commands: []string{CmdRun, CmdLs},
			Usage: "`N` workers started in this process"},
		{Name: "slots", field: func(c *Config) any { return &c.Slots }, check: atLeast(1),
			Kind: KindInt, Default: 4, Commands: allWorking,
			Usage: "`N` shards a worker processes at once"},
		{Name: "split-after", field: func(c *Config) any { return &c.SplitAfter }, check: atLeast(time.Duration(0)),
			Kind: KindDuration, Default: 2 * time.Minute, Commands: allWorking,
			Usage: "split a shard still unfinished after this `duration`, handing its second half to another worker (a few times the median shard's duration); 0 = never"},
		{Name: "split-idle", field: func(c *Config) any { return &c.SplitIdle },
			Kind: KindBool, Default: true, Commands: allWorking,
			Usage: "while workers wait for shards and none is queued, split a shard with at least two pages left for them (work stealing)"},
		{Name: "delete-concurrency", field: func(c *Config) any { return &c.DeleteConc }, check: atLeast(1),
			Kind: KindInt, Default: 256, Commands: []string{CmdRun, CmdWorker},
			Usage: "`N` tag deletes a worker process has in flight at once"},

		// NATS JetStream.
		{Name: "ack-wait", field: func(c *Config) any { return &c.AckWait }, check: atLeast(time.Second),
			Kind: KindDuration, Default: 2 * time.Minute, Commands: []string{CmdRun, CmdCoordinator, CmdWorker, CmdStatus, CmdLs},
			Usage: "JetStream redelivers a shard whose worker has not heartbeat for this `duration` (status: a running shard quiet for twice this is shown stale)"},
		{Name: "max-deliver", field: func(c *Config) any { return &c.MaxDeliver }, check: atLeast(1),
			Kind: KindInt, Default: 5, Commands: allNATS,
			Usage: "`N` deliveries of a shard before it is marked failed"},
		{Name: "nats-replicas", field: func(c *Config) any { return &c.NATSReplicas }, check: between(1, 5),
			Kind: KindInt, Default: 1, Commands: []string{CmdCoordinator, CmdWorker, CmdLs},
			Usage: "`N` replicas of the JetStream streams and buckets tagsweep creates (1 to 5; 3 on a cluster)"},

		// Retention of the JetStream state (every process that provisions it must agree).
		{Name: "audit-max-age", field: func(c *Config) any { return &c.AuditMaxAge }, check: checkAuditMaxAge,
			Kind: KindDuration, Default: 90 * 24 * time.Hour, Commands: allNATS,
			Usage: "keep audit events for this `duration` (at least 1h), then drop them; set on the audit stream, also when it exists; 0 = 2160h"},
		{Name: "audit-max-bytes", field: func(c *Config) any { return &c.AuditMaxBytes }, check: checkAuditMaxBytes,
			Kind: KindInt64, Default: int64(0), Commands: allNATS,
			Usage: "cap the audit stream at `N` bytes, dropping the oldest events past it (at least 1048576; see docs/operations.md to size it); 0 = no cap"},
		{Name: "audit-dry-runs", field: func(c *Config) any { return &c.AuditDryRuns },
			Kind: KindBool, Default: true, Commands: allWorking,
			Usage: "record a dry run's would-be deletions in the audit stream too (--audit-dry-runs=false: only real runs' deletions)"},
		{Name: "records-max-age", field: func(c *Config) any { return &c.RecordsMaxAge }, check: checkRecordsMaxAge,
			Kind: KindDuration, Default: 90 * 24 * time.Hour, Commands: allNATS,
			Usage: "keep run and shard records for this `duration` after their last change (at least 168h, longer than any run); 0 = forever"},

		{Name: "data-dir", field: func(c *Config) any { return &c.DataDir },
			Kind: KindString, Commands: []string{CmdRun, CmdStop, CmdRestore, CmdLs},
			Usage: "`dir`ectory of the embedded JetStream store, locked while in use (a second process on it exits 1 naming the holder); empty = a temporary directory removed at exit",
			Usages: map[string]string{CmdStop: "`dir`ectory of the store of the tagsweep run whose run to stop, instead of --nats-url " +
				"(refused while that tagsweep run is running: stop it with Ctrl-C)",
				CmdRestore: "`dir`ectory of the store of the tagsweep run whose run to undo, instead of --nats-url " +
					"(refused while that tagsweep run is running)"}},

		// Serving.
		{Name: "http-addr", field: func(c *Config) any { return &c.HTTPAddr }, check: checkListenAddr,
			Kind: KindString, Default: DefaultHTTPAddr, Commands: allRegistry,
			Defaults: map[string]any{CmdRun: ""},
			Usage:    "`address` serving /healthz, /readyz and /metrics; empty = do not serve"},

		// Demo (run --demo).
		{Name: "demo", field: func(c *Config) any { return &c.Demo.Enabled },
			Kind: KindBool, Default: false, Commands: []string{CmdRun, CmdLs},
			Usage: "start an in-process simulated registry with a generated namespace and prune it"},
		{Name: "demo-tags", field: func(c *Config) any { return &c.Demo.Tags }, check: onlyDemo(atLeast(1)),
			Kind: KindInt, Default: 20000, Commands: []string{CmdRun, CmdLs},
			Usage: "`N` tags in the --demo namespace"},
		{Name: "demo-days", field: func(c *Config) any { return &c.Demo.Days }, check: onlyDemo(atLeast(1)),
			Kind: KindInt, Default: 30, Commands: []string{CmdRun, CmdLs},
			Usage: "`N` days the --demo tag timestamps span, ending now"},
		{Name: "demo-latency", field: func(c *Config) any { return &c.Demo.Latency }, check: onlyDemo(atLeast(time.Duration(0))),
			Kind: KindDuration, Default: 5 * time.Millisecond, Commands: []string{CmdRun, CmdLs},
			Usage: "simulated registry latency per request in --demo (a `duration`)"},

		// sim.
		{Name: "addr", field: func(c *Config) any { return &c.Sim.Addr }, check: checkListenAddr,
			Kind: KindString, Default: "127.0.0.1:5000", Commands: []string{CmdSim},
			Usage: "`address` the simulated registry listens on"},
		{Name: "tags", field: func(c *Config) any { return &c.Sim.Tags }, check: atLeast(0),
			Kind: KindInt, Default: 200000, Commands: []string{CmdSim},
			Usage: "`N` tags generated in each repository"},
		{Name: "days", field: func(c *Config) any { return &c.Sim.Days }, check: atLeast(1),
			Kind: KindInt, Default: 30, Commands: []string{CmdSim},
			Usage: "`N` days the generated tag timestamps span, ending now"},
		{Name: "latency", field: func(c *Config) any { return &c.Sim.Latency }, check: atLeast(time.Duration(0)),
			Kind: KindDuration, Default: 20 * time.Millisecond, Commands: []string{CmdSim},
			Usage: "simulated latency per request (a `duration`)"},
		{Name: "seed", field: func(c *Config) any { return &c.Sim.Seed }, check: atLeast(int64(0)),
			Kind: KindInt64, Default: int64(1), Commands: []string{CmdSim},
			Usage: "random `seed` of the generated namespace"},
		{Name: "admin", field: func(c *Config) any { return &c.Sim.Admin }, check: checkSimAdmin,
			Kind: KindBool, Default: false, Commands: []string{CmdSim},
			Usage: "also serve /_sim/ to loopback clients: the tags, deletions, list requests and counters, tag loading and fault injection (for tests)"},

		// stop.
		{Name: "reason", field: func(c *Config) any { return &c.Stop.Reason },
			Kind: KindString, Commands: []string{CmdStop},
			Usage: "why the run is stopped, recorded in the run (status shows it); empty = stopped by an operator"},
		{Name: "wait", field: func(c *Config) any { return &c.Stop.Wait }, check: atLeast(time.Duration(0)),
			Kind: KindDuration, Default: 2 * time.Minute, Commands: []string{CmdStop},
			Usage: "how long to wait for the run's coordinator to mark it stopped once its workers handed back their shards; 0 = do not wait"},

		// Undo.
		{Name: "record-digests", field: func(c *Config) any { return &c.RecordDigests },
			Kind: KindBool, Default: false, Commands: []string{CmdRun, CmdCoordinator, CmdWorker},
			Usage: "read each tag's manifest digest (one HEAD) before deleting it and keep it in the audit event, so that " +
				"restore can put the tag back on any registry; recorded in the run (a worker given it records for every run)"},
		{Name: "tag-regex", field: func(c *Config) any { return &c.Restore.TagRegex }, check: checkTagRegex,
			Kind: KindString, Commands: []string{CmdRestore},
			Usage: "restore only the deleted tags that match this `regexp`; empty = all"},
		{Name: "concurrency", field: func(c *Config) any { return &c.Restore.Concurrency }, check: atLeast(1),
			Kind: KindInt, Default: 64, Commands: []string{CmdRestore},
			Usage: "`N` tags restored at once"},

		// status.
		{Name: "state", field: func(c *Config) any { return &c.Status.States }, check: checkStates,
			Kind: KindStrings, EnvSep: ",", Commands: []string{CmdStatus},
			Usage: "show only runs in this `state` (running, done, failed, stopped, refused, abandoned), or with RUN only its " +
				"shards in this state (pending, running, done, failed); repeat or comma-separate for several"},
		{Name: "names", field: func(c *Config) any { return &c.Ls.Names },
			Kind: KindBool, Default: false, Commands: []string{CmdLs},
			Usage: "print every tag name, sorted, one per line, on stdout (the inventory then goes to stderr)"},
		{Name: "stale-after", field: func(c *Config) any { return &c.Status.StaleAfter }, check: atLeast(time.Duration(0)),
			Kind: KindDuration, Default: time.Duration(0), Commands: []string{CmdStatus},
			Usage: "flag a running shard as stale when its record was not written for this `duration` (its worker may be gone); 0 = five times --ack-wait, when workers and the coordinator count it stale too"},
	}
}
