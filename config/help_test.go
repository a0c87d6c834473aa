package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestHelpSuffix(t *testing.T) {
	tests := []struct {
		flag, cmd, want string
	}{
		{"ttl-days", CmdRun, "(env TAGSWEEP_TTL_DAYS, default 5)"},
		{"max-deletes", CmdRun, "(env TAGSWEEP_MAX_DELETES, default 0)"}, // 0 = no cap: worth saying
		{"max-rps", CmdWorker, "(env TAGSWEEP_MAX_RPS, default 0)"},
		{"split-after", CmdWorker, "(env TAGSWEEP_SPLIT_AFTER, default 2m)"},
		{"ack-wait", CmdStatus, "(env TAGSWEEP_ACK_WAIT, default 2m)"},
		{"confirm", CmdRun, "(env TAGSWEEP_CONFIRM)"}, // false goes without saying
		{"report", CmdRun, "(env TAGSWEEP_REPORT)"},   // empty
		{"http-addr", CmdWorker, "(env TAGSWEEP_HTTP_ADDR, default :8080)"},
		{"http-addr", CmdRun, "(env TAGSWEEP_HTTP_ADDR)"}, // per-command default: empty
		{"repository", CmdSim, "(env TAGSWEEP_REPOSITORY, default openshift/ci)"},
		{"docker-config", CmdRun, "(env TAGSWEEP_DOCKER_CONFIG or QUAY_DOCKERCONFIGJSON_PATH)"},
		{"output", CmdAudit, "(env TAGSWEEP_OUTPUT, default jsonl)"},
		{"output", CmdStatus, "(env TAGSWEEP_OUTPUT, default table)"},
		{"output-file", CmdAudit, "(env TAGSWEEP_OUTPUT_FILE)"},
	}
	for _, tc := range tests {
		f, ok := Lookup(tc.flag)
		if !ok {
			t.Fatalf("no flag %s", tc.flag)
		}
		if got := f.HelpSuffix(tc.cmd); got != tc.want {
			t.Errorf("%s.HelpSuffix(%s) = %q, want %q", tc.flag, tc.cmd, got, tc.want)
		}
	}
}

// TestUsagePerCommand: sim serves the repositories it is given; it prunes nothing.
func TestUsagePerCommand(t *testing.T) {
	f, _ := Lookup("repository")
	if got := f.UsageFor(CmdSim); !strings.Contains(got, "to serve") || strings.Contains(got, "prune") {
		t.Errorf("sim --repository usage = %q, want what sim does with it", got)
	}
	if got := f.UsageFor(CmdRun); !strings.Contains(got, "to prune") {
		t.Errorf("run --repository usage = %q, want the repository to prune", got)
	}
	fs := pflag.NewFlagSet(CmdSim, pflag.ContinueOnError)
	Register(CmdSim, fs)
	if u := fs.Lookup("repository").Usage; !strings.Contains(u, "to serve") {
		t.Errorf("sim --help for --repository = %q, want the sim's own usage", u)
	}
}
