package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/proto"
)

// completions runs the shell's completion request `tagsweep __complete args...` and returns
// the offered words (descriptions cut off) and the directive line.
func completions(t *testing.T, args ...string) (words []string, directive string) {
	t.Helper()
	code, out, errOut := execute(t, t.Context(), append([]string{cobra.ShellCompRequestCmd}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %v: exit %d\n%s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		w, _, _ := strings.Cut(l, "\t")
		words = append(words, w)
	}
	return words, lines[len(lines)-1]
}

func TestCompletion(t *testing.T) {
	clearEnv(t)
	srv := startNATS(t)
	l := openLedger(t, srv)
	start := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	for i, id := range []string{"nightly-1", "nightly-2", "manual"} {
		if _, err := l.CreateRun(t.Context(), proto.RunRecord{RunID: id, Registry: "quay.io", Repositories: []string{"openshift/ci"},
			State: proto.RunDone, StartedAt: start.Add(time.Duration(i) * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	noFiles := ":4" // cobra.ShellCompDirectiveNoFileComp
	tests := []struct {
		name      string
		args      []string
		want      []string
		directive string
	}{
		{"log format", []string{"run", "--log-format", ""}, []string{"auto", "text", "json"}, noFiles},
		{"log level", []string{"audit", "--log-level", ""}, []string{"debug", "info", "warn", "error"}, noFiles},
		{"status: runs, newest first", []string{"status", "--nats-url", srv.ClientURL(), ""}, []string{"manual", "nightly-2", "nightly-1"}, noFiles},
		{"audit: runs by prefix", []string{"audit", "--nats-url", srv.ClientURL(), "night"}, []string{"nightly-2", "nightly-1"}, noFiles},
		{"audit takes one run", []string{"audit", "--nats-url", srv.ClientURL(), "manual", ""}, nil, noFiles},
		{"no NATS: nothing", []string{"status", "--nats-url", "nats://127.0.0.1:1", ""}, nil, noFiles},
		{"a file for --report", []string{"run", "--report", ""}, nil, ":0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			words, directive := completions(t, tc.args...)
			if !slices.Equal(words, tc.want) || directive != tc.directive {
				t.Errorf("__complete %v = %q %s, want %q %s", tc.args, words, directive, tc.want, tc.directive)
			}
		})
	}

	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := execute(t, t.Context(), "completion", shell)
		if code != 0 || !strings.Contains(out, "tagsweep") || !strings.Contains(out, cobra.ShellCompRequestCmd) {
			t.Errorf("completion %s: exit %d, %d bytes of script\n%s", shell, code, len(out), errOut)
		}
	}
}

// Every command's --help has examples, and every flag says its environment variable.
func TestHelpReadsWell(t *testing.T) {
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range config.Commands() {
		c, _, err := root.Find([]string{name})
		if err != nil || c.Name() != name {
			t.Errorf("command %s: not found (%v)", name, err)
			continue
		}
		if c.Short == "" || c.Example == "" {
			t.Errorf("%s --help: want a short description and examples", name)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			fl, ok := config.Lookup(f.Name)
			if !ok {
				if f.Name != "help" {
					t.Errorf("%s --%s is not in the config table", name, f.Name)
				}
				return
			}
			if !strings.Contains(f.Usage, "(env "+config.EnvName(f.Name)) {
				t.Errorf("%s --%s usage %q does not name its environment variable", name, f.Name, f.Usage)
			}
			if d := fl.DefaultString(name); d != "" && d != "false" && !strings.Contains(f.Usage, "default "+d+")") {
				t.Errorf("%s --%s usage %q does not show its default %q", name, f.Name, f.Usage, d)
			}
		})
	}
}
