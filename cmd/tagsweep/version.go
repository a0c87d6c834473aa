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
	commit := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				if s.Value == "true" && commit != "" {
					commit += "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	extra := runtime.Version()
	if commit != "" {
		extra = "commit " + commit + ", " + extra
	}
	_, err := fmt.Fprintf(w, "tagsweep %s (%s)\n", v, extra)
	return err
}
