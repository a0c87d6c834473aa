package config

import (
	"fmt"
	"slices"
	"strings"
)

// Markdown renders the flag table as the reference section of docs/configuration.md:
// one row per key with its environment variables, default and commands.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| Flag / file key | Environment | Default | Commands | Meaning |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, f := range Flags() {
		env := make([]string, len(f.Env))
		for i, e := range f.Env {
			env[i] = "`" + e + "`"
		}
		name := "`--" + f.Name + "`"
		if f.Short != "" {
			name += ", `-" + f.Short + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n",
			name, strings.Join(env, ", "), markdownDefault(f), strings.Join(f.Commands, ", "), markdownUsage(f))
	}
	return b.String()
}

// markdownDefault shows the default, and the commands whose default differs.
func markdownDefault(f Flag) string {
	show := func(cmd string) string {
		if d := f.DefaultString(cmd); d != "" {
			return "`" + strings.ReplaceAll(d, "|", `\|`) + "`"
		}
		return "empty"
	}
	base := ""
	var others []string
	for _, cmd := range f.Commands {
		if _, ok := f.Defaults[cmd]; ok {
			others = append(others, cmd+": "+show(cmd))
			continue
		}
		if base == "" {
			base = show(cmd)
		}
	}
	slices.Sort(others)
	switch {
	case base == "":
		return strings.Join(others, "; ")
	case len(others) > 0:
		return base + " (" + strings.Join(others, "; ") + ")"
	}
	return base
}

func markdownUsage(f Flag) string {
	u := strings.ReplaceAll(f.Usage, "`", "")
	u = strings.ReplaceAll(u, "|", `\|`)
	if f.Kind == KindStrings {
		u += " (a YAML list in the file)"
	}
	if f.Secret {
		u += " **Secret.**"
	}
	return u
}
