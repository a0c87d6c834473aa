package config

import (
	"strings"
	"testing"
	"time"
)

// TestValidatePreservation: --delete-api and --repository-alias are checked, and quay-v1
// needs the OAuth token it sends.
func TestValidatePreservation(t *testing.T) {
	base := func() Config {
		return Config{Command: CmdWorker, PruneRegex: DefaultPruneRegex, LogFormat: "json", LogLevel: "warn", NATSURL: DefaultNATSURL, PageSize: 100,
			Slots: 4, DeleteConc: 64, AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 1, Registry: "quay.io"}
	}
	coord := func() Config {
		return Config{Command: CmdCoordinator, LogFormat: "json", LogLevel: "warn", NATSURL: DefaultNATSURL,
			Registry: "quay.io", Repositories: []string{"openshift/ci"}, TTLDays: 5,
			PruneRegex: DefaultPruneRegex, TagTimezone: "UTC", AckWait: time.Minute, MaxDeliver: 5, NATSReplicas: 1}
	}
	tests := []struct {
		name string
		c    func() Config
		want string // substring of the error; "" = valid
	}{
		{"v2", func() Config { c := base(); c.DeleteAPI = DeleteAPIV2; return c }, ""},
		{"quay-v1 with a token", func() Config { c := base(); c.DeleteAPI = DeleteAPIQuayV1; c.Token = "t"; return c }, ""},
		{"quay-v1 without a token", func() Config { c := base(); c.DeleteAPI = DeleteAPIQuayV1; return c }, "--delete-api: quay-v1 needs --token"},
		{"unknown api", func() Config { c := base(); c.DeleteAPI = "v1"; return c }, `--delete-api: "v1" is not`},
		{"aliases", func() Config {
			c := coord()
			c.RepoAliases = []string{"quay-proxy.ci.openshift.org/openshift/ci", "proxy.example/ci=openshift/ci"}
			return c
		}, ""},
		{"bad alias", func() Config { c := coord(); c.RepoAliases = []string{"quay-proxy.ci.openshift.org"}; return c }, "--repository-alias"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c().Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if f, ok := Lookup("preserve-payloads"); !ok || f.Default != true {
		t.Errorf("preserve-payloads defaults to %v, want true (the existing pruner always preserves)", f.Default)
	}
}
