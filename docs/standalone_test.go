// Package docs holds the documentation; its test checks that the documentation and the
// code comments make sense from the repository alone.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// outside matches what a reader who only has the repository cannot follow: files outside
// it (the design notes and reference documents it was built from) and the numbers of the
// issues that asked for a change. Each is written out in place instead.
var outside = regexp.MustCompile(`(?i)\.\./shared\b|\bshared/reference\b|\b(design|style)\.md\b|existing-pruner\.md|` +
	`style-anchors|\bissues? #?[0-9]+\b|§ ?[0-9]`)

// TestStandsAlone: README, docs/, the deployment and every Go file (comments included)
// refer to nothing outside the repository.
func TestStandsAlone(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name != ".." && strings.HasPrefix(name, ".") && name != ".ci" || name == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !text(d.Name()) || filepath.Base(path) == "standalone_test.go" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := outside.FindString(line); m != "" {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d refers to %q, which a reader of the repository alone cannot follow:\n\t%s",
					rel, i+1, m, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// text reports whether a file is one a reader reads: documentation, code, configuration.
func text(name string) bool {
	switch filepath.Ext(name) {
	case ".go", ".md", ".yaml", ".yml", ".json", ".txt", ".sh":
		return true
	}
	return name == "Dockerfile" || name == "run" || name == ".dockerignore"
}
