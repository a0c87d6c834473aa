package deploy

import (
	"github.com/tagsweep/tagsweep/config"
)

// flagInfo is what the manifests need to know about one tagsweep flag.
type flagInfo struct {
	name     string
	env      []string // environment variables the binary reads for it
	commands []string // commands that take it
	def      string   // default for the worker (else the coordinator), as typed ("" = none)
}

// flagTable is config.Flags(), the table the binary registers its flags, environment
// variables and configuration file keys from.
func flagTable() []flagInfo {
	var t []flagInfo
	for _, f := range config.Flags() {
		cmd := config.CmdWorker
		if !f.For(cmd) {
			cmd = config.CmdCoordinator
		}
		t = append(t, flagInfo{name: f.Name, env: f.Env, commands: f.Commands, def: f.DefaultString(cmd)})
	}
	return t
}
