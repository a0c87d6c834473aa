package deploy

import (
	"bufio"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerfile is the repository's Dockerfile as instructions: continuation lines joined,
// comments dropped.
func dockerfile(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	var froms, users, entrypoints, builds []string
	for _, ins := range dockerfile(t) {
		word, rest, _ := strings.Cut(ins, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			froms = append(froms, rest)
		case "USER":
			users = append(users, rest)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, rest)
		case "RUN", "ENV":
			if strings.Contains(rest, "go build") {
				builds = append(builds, rest)
			}
		}
	}
	if len(froms) != 2 || !regexp.MustCompile(`(^| )golang:1\.26( |$)`).MatchString(froms[0]) || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("stages %q, want a golang:1.26 builder named build, then the final image", froms)
	}
	if len(froms) > 0 && froms[len(froms)-1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final image %q, want gcr.io/distroless/static-debian12:nonroot", froms[len(froms)-1])
	}
	// Numeric, so that the kubelet can check runAsNonRoot (a user name it cannot resolve is
	// refused); 65532 is distroless's nonroot.
	if len(users) != 1 || users[0] != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (distroless nonroot, numeric)", users)
	}
	if len(entrypoints) != 1 || entrypoints[0] != `["/usr/local/bin/tagsweep"]` {
		t.Errorf("ENTRYPOINT %q, want the tagsweep binary in exec form", entrypoints)
	}
	if len(builds) != 1 {
		t.Fatalf("%d go build instructions, want 1", len(builds))
	}
	all := strings.Join(dockerfile(t), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "-X main.revision=${REVISION}",
		"./cmd/tagsweep", "GOTOOLCHAIN=local"} {
		if !strings.Contains(all, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	// -X main.version only works if package main has a string variable version.
	for _, v := range []string{"version", "revision"} {
		if !hasStringVar(t, filepath.Join("..", "cmd", "tagsweep"), "main", v) {
			t.Errorf("cmd/tagsweep has no package-level `var %s string` for -X main.%s", v, v)
		}
	}
	// The OCI labels of the final stage, from build arguments declared in that stage (an
	// ARG of the builder stage is empty there).
	final := all[strings.LastIndex(all, "\nFROM "):]
	for _, want := range []string{"ARG VERSION", "ARG REVISION", `org.opencontainers.image.source="${SOURCE}"`,
		`org.opencontainers.image.version="${VERSION}"`, `org.opencontainers.image.revision="${REVISION}"`} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage of the Dockerfile lacks %s", want)
		}
	}
}

func hasStringVar(t *testing.T, dir, pkg, name string) bool {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name.Name != pkg {
			continue
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				typ, _ := vs.Type.(*ast.Ident)
				for _, n := range vs.Names {
					if n.Name == name && typ != nil && typ.Name == "string" && len(vs.Values) == 0 {
						return true
					}
				}
			}
		}
	}
	return false
}

// dockerignore is the repository's .dockerignore patterns.
func dockerignore(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore exception %q: the matcher in this test does not handle them", l)
		}
		pats = append(pats, strings.TrimPrefix(path.Clean(l), "/"))
	}
	return pats
}

// ignored reports whether a .dockerignore pattern excludes file (a slash-separated path
// relative to the context): a pattern matching the file or any parent directory excludes it,
// and "**/" matches any number of leading directories.
func ignored(pats []string, file string) bool {
	parts := strings.Split(file, "/")
	for _, p := range pats {
		for i := 1; i <= len(parts); i++ {
			prefix := strings.Join(parts[:i], "/")
			if ok, _ := path.Match(p, prefix); ok {
				return true
			}
			if rest, ok := strings.CutPrefix(p, "**/"); ok {
				for j := 0; j < i; j++ {
					if ok, _ := path.Match(rest, strings.Join(parts[j:i], "/")); ok {
						return true
					}
				}
			}
		}
	}
	return false
}

func TestIgnored(t *testing.T) {
	pats := []string{".git", "**/*_test.go", "deploy", "*.md", "**/config.json"}
	tests := []struct {
		file string
		want bool
	}{
		{".git/HEAD", true},
		{"cmd/tagsweep/main.go", false},
		{"cmd/tagsweep/main_test.go", true},
		{"main_test.go", true},
		{"deploy/base/kustomization.yaml", true},
		{"README.md", true},
		{"docs/operations.md", false}, // *.md is anchored at the root
		{"a/b/config.json", true},
		{"go.mod", false},
	}
	for _, tc := range tests {
		if got := ignored(pats, tc.file); got != tc.want {
			t.Errorf("ignored(%q) = %v, want %v", tc.file, got, tc.want)
		}
	}
}

// TestDockerignoreKeepsTheBuildInputs checks that every file `go build ./cmd/tagsweep` reads
// (go.mod, go.sum, the Go and embedded files of every package of the module it imports) stays
// in the build context.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	pats := dockerignore(t)
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-json=Dir,Module,GoFiles,EmbedFiles", "./cmd/tagsweep")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir        string
			Module     *struct{ Path string }
			GoFiles    []string
			EmbedFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/tagsweep/tagsweep" {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 3 {
		t.Fatalf("go list found no files of the module: %s", out)
	}
	for _, f := range files {
		if ignored(pats, f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
	for _, f := range []string{".git/config", "deploy/base/kustomization.yaml", "telemetry/server_test.go"} {
		if !ignored(pats, f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}
