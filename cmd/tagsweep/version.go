package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
// Empty means: from the module's build information.
var version string

// revision is the commit built, set at build time (-X main.revision=...) where the build
// has no .git to read it from, as in the container image. Empty means: from the build
// information.
var revision string

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(a.stdout, version)
		},
	}
}

// printVersion prints "tagsweep <version> (<commit>, <go version>)".
func printVersion(w io.Writer, v string) error {
	_, err := fmt.Fprintln(w, versionLine(v))
	return err
}

// versionLine is "tagsweep <version> (<commit>, <go version>)".
func versionLine(v string) string {
	b := build(v)
	extra := b.Go
	if b.Commit != "" {
		extra = "commit " + b.Commit + ", " + extra
	}
	return fmt.Sprintf("tagsweep %s (%s)", b.Version, extra)
}

// buildInfo says which tagsweep this is.
type buildInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
}

// build is this binary's build information; v is the stamped version, "" for none.
func build(v string) buildInfo {
	commit := revision
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if revision != "" {
					continue
				}
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				if s.Value == "true" && commit != "" && revision == "" {
					commit += "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return buildInfo{Version: v, Commit: commit, Go: runtime.Version()}
}
