package proto

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestImportsOnlyStandardLibrary keeps proto dependable by anything: its non-test files may
// import only standard-library packages (no dot in the first path element).
func TestImportsOnlyStandardLibrary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %q: proto may import only the standard library", name, path)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}

// fill sets every exported field of the value v points at to a non-zero value derived from
// seed, so a round trip that drops or renames a field is caught, including fields added later.
func fill(t *testing.T, v reflect.Value, seed int) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fill(t, v.Elem(), seed)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 1+seed%28, seed%24, 4, 5, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), seed+i+1)
			}
		}
	case reflect.String:
		v.SetString("s" + strconv.Itoa(seed))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(seed + 1))
	case reflect.Uint64, reflect.Uint32, reflect.Uint8:
		v.SetUint(uint64(seed + 1))
	case reflect.Float64:
		v.SetFloat(float64(seed) + 0.5)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), seed+i)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, k, seed)
		fill(t, e, seed+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		t.Fatalf("fill: unhandled kind %s (%s): extend the test", v.Kind(), v.Type())
	}
}

// TestRoundTrip encodes every wire type with all fields set and decodes it back unchanged.
func TestRoundTrip(t *testing.T) {
	values := []any{
		&ShardMessage{}, &ShardRecord{}, &RunRecord{}, &AuditEvent{}, &Report{},
		&Policy{}, &Counters{}, &Range{}, &DeleteBudget{}, &Lease{}, &ShardTotals{},
		&PreserveCounters{}, &PreserveSettings{}, &PreserveResult{}, &StopRequest{}, &Inventory{},
	}
	for i, in := range values {
		name := reflect.TypeOf(in).Elem().Name()
		t.Run(name, func(t *testing.T) {
			fill(t, reflect.ValueOf(in), i*10)
			data, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			out := reflect.New(reflect.TypeOf(in).Elem()).Interface()
			dec := json.NewDecoder(strings.NewReader(string(data)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(out); err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip changed %s:\n in: %+v\nout: %+v\njson: %s", name, in, out, data)
			}
		})
	}
}

// TestReportShape pins the JSON keys of the --report document that operators' tooling reads.
func TestReportShape(t *testing.T) {
	data, err := json.Marshal(Report{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"run_id", "dry_run", "cutoff", "started_at", "finished_at", "duration_seconds",
		"repositories", "shards", "tags"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q: %s", k, data)
		}
	}
	var tags map[string]int
	if err := json.Unmarshal(m["tags"], &tags); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scanned", "eligible", "deleted", "already_gone", "delete_failed", "kept", "invalid"} {
		if _, ok := tags[k]; !ok {
			t.Errorf("report tags lack %q: %s", k, m["tags"])
		}
	}
	var shards map[string]int
	if err := json.Unmarshal(m["shards"], &shards); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"total", "done", "failed"} {
		if _, ok := shards[k]; !ok {
			t.Errorf("report shards lack %q: %s", k, m["shards"])
		}
	}
}

// TestTokensAndKeys checks that IDs which become subject tokens and KV keys are validated, and
// that a repository name never reaches a key raw.
func TestTokensAndKeys(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want bool
	}{{"20261122T031500Z-ab12", true}, {"0-20261101", true}, {"", false}, {"a.b", false}, {"a b", false},
		{"a*", false}, {"a>", false}, {strings.Repeat("x", 64), true}, {strings.Repeat("x", 65), false}} {
		if got := ValidToken(tt.s); got != tt.want {
			t.Errorf("ValidToken(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
	if k := LeaseKey("openshift/ci"); strings.ContainsAny(k[len("repo."):], "/.*> ") {
		t.Errorf("LeaseKey leaks the raw repository name: %q", k)
	}
	if got := ShardSubject("r1", "s1"); got != SubjectShardsPrefix+".r1.s1" {
		t.Errorf("ShardSubject = %q", got)
	}
	if !(Range{After: "a", Through: "c"}).Contains("c") || (Range{After: "a", Through: "c"}).Contains("a") {
		t.Error("Range must be (After, Through]")
	}
}
