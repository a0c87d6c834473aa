package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated section of docs/configuration.md")

const (
	docsPath  = "../docs/configuration.md"
	beginMark = "<!-- BEGIN GENERATED FLAGS: go test ./config -run TestDocs -update -->\n"
	endMark   = "<!-- END GENERATED FLAGS -->"
)

// TestDocs checks that docs/configuration.md documents every key exactly as the table
// says. Run with -update to regenerate its table.
func TestDocs(t *testing.T) {
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated-section markers", docsPath)
	}
	want := Markdown()
	got := doc[i+len(beginMark) : j]
	if *update {
		doc = doc[:i+len(beginMark)] + want + doc[j:]
		if err := os.WriteFile(docsPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, f := range Flags() {
		if !strings.Contains(got, "`--"+f.Name+"`") {
			t.Errorf("%s does not document --%s", docsPath, f.Name)
		}
		for _, e := range f.Env {
			if !strings.Contains(got, "`"+e+"`") {
				t.Errorf("%s does not document the environment variable %s", docsPath, e)
			}
		}
	}
	if got != want {
		t.Errorf("%s is out of date with config.Flags(); run: go test ./config -run TestDocs -update", docsPath)
	}
}
