package deploy

import "strings"

// flagInfo is what the manifests need to know about one tagsweep flag.
type flagInfo struct {
	name     string
	env      []string // environment variables the binary reads for it
	commands []string // commands that take it
	def      string   // default for worker/coordinator, as text ("" = none)
}

// flagTable returns every flag of the CLI contract.
//
// TODO(config): replace with config.Flags() once config/ is committed; until then this is the
// contract as written in the brief.
func flagTable() []flagInfo {
	pruning := []string{"run", "coordinator"}
	working := []string{"run", "worker"}
	registry := []string{"run", "coordinator", "worker"}
	all := []string{"run", "coordinator", "worker", "status", "sim"}
	t := []flagInfo{
		{name: "config", commands: all},
		{name: "log-format", commands: all, def: "auto"},
		{name: "log-level", commands: all, def: "info"},
		{name: "nats-url", commands: []string{"coordinator", "worker", "status"}, def: "nats://127.0.0.1:4222"},
		{name: "registry", commands: pruning},
		{name: "repository", commands: []string{"run", "coordinator", "sim"}},
		{name: "ttl-days", commands: pruning, def: "5"},
		{name: "ttl", commands: pruning},
		{name: "confirm", commands: pruning, def: "false"},
		{name: "plain-http", commands: pruning, def: "false"},
		{name: "report", commands: pruning},
		{name: "run-id", commands: pruning},
		{name: "shard-by", commands: pruning, def: "day"},
		{name: "prune-regex", commands: pruning, def: `^(\d{14})_prune_`},
		{name: "keep-regex", commands: pruning},
		{name: "tag-timezone", commands: pruning, def: "UTC"},
		{name: "max-deletes", commands: pruning, def: "0"},
		{name: "page-size", commands: registry, def: "100"},
		{name: "docker-config", commands: registry, env: []string{"TAGSWEEP_DOCKER_CONFIG", "QUAY_DOCKERCONFIGJSON_PATH"}},
		{name: "token", commands: registry, env: []string{"TAGSWEEP_TOKEN", "QUAY_OAUTH_TOKEN"}},
		{name: "max-rps", commands: working, def: "0"},
		{name: "workers", commands: []string{"run"}, def: "4"},
		{name: "slots", commands: working, def: "4"},
		{name: "delete-concurrency", commands: working, def: "64"},
		{name: "ack-wait", commands: registry, def: "2m"},
		{name: "max-deliver", commands: registry, def: "5"},
		{name: "nats-replicas", commands: []string{"coordinator", "worker"}, def: "1"},
		{name: "data-dir", commands: []string{"run"}},
		{name: "http-addr", commands: registry, def: ":8080"},
		{name: "demo", commands: []string{"run"}},
		{name: "demo-tags", commands: []string{"run"}},
		{name: "demo-days", commands: []string{"run"}},
		{name: "demo-latency", commands: []string{"run"}},
		{name: "addr", commands: []string{"sim"}},
		{name: "tags", commands: []string{"sim"}},
		{name: "days", commands: []string{"sim"}},
		{name: "latency", commands: []string{"sim"}},
		{name: "seed", commands: []string{"sim"}},
	}
	for i := range t {
		if len(t[i].env) == 0 {
			t[i].env = []string{"TAGSWEEP_" + strings.ToUpper(strings.ReplaceAll(t[i].name, "-", "_"))}
		}
	}
	return t
}
