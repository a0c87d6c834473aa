package config

import "testing"

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
		{"output", CmdAudit, "(env TAGSWEEP_OUTPUT)"},
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
