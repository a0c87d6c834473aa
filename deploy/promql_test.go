package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"

	"github.com/tagsweep/tagsweep/telemetry"
)

// targetLabels are the labels Prometheus adds to every series it scrapes from a pod
// (PodMonitor): an expression may group or match by them on any metric.
var targetLabels = []string{"namespace", "pod", "container", "instance", "job", "endpoint"}

// externalMetrics are the metrics of other exporters the alerts read (kube-state-metrics),
// with the labels they have.
var externalMetrics = map[string][]string{
	"kube_job_failed":                          {"namespace", "job_name", "condition"},
	"kube_job_created":                         {"namespace", "job_name"},
	"kube_cronjob_status_last_successful_time": {"namespace", "cronjob"},
}

// grafanaVars are the dashboard's variables, replaced by a value of their kind before an
// expression is parsed.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "6h",
	"${namespace}", "ci", "$namespace", "ci")

// exportedMetrics are the metric families tagsweep's binary registers, each with every
// label it has and the values of the labels it pre-initialises: a process with the run
// gauges (a coordinator), its build, and one request through the instrumented transport
// (the request counter and histogram have no series before their first request).
func exportedMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	m := telemetry.New()
	m.ExportRun()
	m.SetBuild("v0.0.0", "0123456789ab")
	rt := m.Transport(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(""))}, nil
	}))
	resp, err := rt.RoundTrip(&http.Request{Method: "GET", URL: &url.URL{Path: "/v2/a/tags/list"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				byName[f.GetName()+suffix] = f
			}
		}
	}
	return byName
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// labelsOf are the label names a metric family's series have.
func labelsOf(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if !slices.Contains(out, l.GetName()) {
				out = append(out, l.GetName())
			}
		}
	}
	if f.GetType() == dto.MetricType_HISTOGRAM {
		out = append(out, "le")
	}
	return out
}

// promQLProblems parses expr and checks that every metric it selects is one tagsweep
// registers (or a known external one), that every label it matches, groups or joins by is a
// label of the metrics it selects (or a target label), and that every value it matches
// exactly is one the metric takes. It returns what is wrong.
func promQLProblems(expr string, exported map[string]*dto.MetricFamily) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	known := slices.Clone(targetLabels) // labels of the selected metrics, for by/on clauses
	var used [][]string                 // by, without, on and ignoring clauses
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			var labels []string
			if f, ok := exported[n.Name]; ok {
				labels = labelsOf(f)
			} else if ext, ok := externalMetrics[n.Name]; ok {
				labels = ext
			} else {
				bad("%s is neither a tagsweep metric nor a known external one", n.Name)
				return nil
			}
			known = append(known, labels...)
			for _, lm := range n.LabelMatchers {
				if lm.Name == "__name__" {
					continue
				}
				if !slices.Contains(labels, lm.Name) && !slices.Contains(targetLabels, lm.Name) {
					bad("%s has no label %s", n.Name, lm.Name)
					continue
				}
				if f, ok := exported[n.Name]; ok && slices.Contains(labels, lm.Name) {
					if v, ok := missingValue(f, lm.Name, lm.Type.String(), lm.Value); !ok {
						bad("%s{%s} never takes the value %q", n.Name, lm.Name, v)
					}
				}
			}
		case *parser.AggregateExpr:
			used = append(used, n.Grouping)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				used = append(used, n.VectorMatching.MatchingLabels)
			}
		}
		return nil
	})
	for _, labels := range used {
		for _, l := range labels {
			if !slices.Contains(known, l) && l != "le" {
				bad("groups or matches by %s, which none of its metrics has", l)
			}
		}
	}
	return problems
}

// missingValue returns a value that a matcher matches exactly (or in an alternation of a
// regexp) and that a pre-initialised label of f never takes, and false; true when there is
// none. A label whose values are not pre-initialised (a build's version) is not checked.
func missingValue(f *dto.MetricFamily, label, op, value string) (string, bool) {
	seen := map[string]bool{}
	for _, metric := range f.GetMetric() {
		for _, l := range metric.GetLabel() {
			if l.GetName() == label {
				seen[l.GetValue()] = true
			}
		}
	}
	switch {
	case op == "!=" || op == "!~":
		return "", true
	case op == "=~" && strings.ContainsAny(value, ".*+?[]()\\"):
		return "", true // a real regexp: cannot enumerate
	case f.GetName() == telemetry.MetricBuildInfo:
		return "", true
	}
	for _, v := range strings.Split(value, "|") {
		if !seen[v] {
			return v, false
		}
	}
	return "", true
}

// dashboardExprs are the PromQL expressions of a Grafana dashboard: every target's expr, and
// the metric and label of label_values() variable queries as a selector.
func dashboardExprs(t *testing.T, data []byte) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	labelValues := regexp.MustCompile(`^label_values\(\s*([^,]+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				s, ok := val.(string)
				switch {
				case ok && k == "expr":
					out = append(out, s)
				case ok && (k == "query" || k == "definition") && strings.HasPrefix(s, "label_values("):
					m := labelValues.FindStringSubmatch(s)
					if m == nil {
						t.Errorf("dashboard variable query %q is not label_values(metric, label)", s)
						continue
					}
					out = append(out, "count by ("+m[2]+") ("+m[1]+")")
				default:
					walk(val)
				}
			}
		case []any:
			for _, val := range x {
				walk(val)
			}
		}
	}
	walk(doc)
	return out
}

// TestPromQLNamesRealMetrics parses every expression of the alert rules and of the Grafana
// dashboard and checks the metrics and labels each names against those the binary registers.
func TestPromQLNamesRealMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	rule := find[prometheusRule](t, build(t, "monitoring"), "PrometheusRule", "tagsweep")
	n := 0
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			for _, p := range promQLProblems(r.Expr, exported) {
				t.Errorf("alert %s: %s\n%s", r.Alert, p, r.Expr)
			}
			n++
		}
	}
	cms := all[corev1.ConfigMap](build(t, "monitoring"), "ConfigMap")
	if len(cms) != 1 || !strings.HasPrefix(cms[0].Name, "tagsweep-dashboard-") {
		t.Fatalf("monitoring builds %d ConfigMaps, want the dashboard's alone", len(cms))
	}
	cm := cms[0]
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v, want grafana_dashboard: \"1\" for Grafana's sidecar", cm.Labels)
	}
	exprs := dashboardExprs(t, []byte(cm.Data["dashboard.json"]))
	for _, e := range exprs {
		for _, p := range promQLProblems(e, exported) {
			t.Errorf("dashboard: %s\n%s", p, e)
		}
	}
	if n < 5 || len(exprs) < 15 {
		t.Errorf("checked %d alert and %d dashboard expressions; the files hold more", n, len(exprs))
	}
	// Each thing the dashboard is for has a panel that shows it.
	for _, want := range []string{telemetry.MetricRunShards, telemetry.MetricTagsScanned, telemetry.MetricTagsDeleted,
		telemetry.MetricTagsFailed, telemetry.MetricRateLimited, telemetry.MetricRequests, telemetry.MetricShardsInFlight,
		telemetry.MetricSlots, telemetry.MetricRequestRate, "deriv("} {
		if !slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("no dashboard panel uses %s", want)
		}
	}
}

// TestPromQLCheckCatches: the check above finds an unknown metric, an unknown label, a label
// value the metric never takes, a grouping by a label none of the metrics has, and an
// expression that does not parse; it passes good ones.
func TestPromQLCheckCatches(t *testing.T) {
	exported := exportedMetrics(t)
	tests := []struct {
		expr string
		want string // a substring of the problem; "" = none
	}{
		{`rate(tagsweep_tags_scaned_total[5m])`, "neither a tagsweep metric"},
		{`tagsweep_run_shards{status="done"}`, "has no label status"},
		{`tagsweep_run_shards{state="finished"}`, `never takes the value "finished"`},
		{`tagsweep_run_shards{state=~"done|finished"}`, `never takes the value "finished"`},
		{`sum by (repository) (tagsweep_run_shards)`, "groups or matches by repository"},
		{`kube_job_status_failed > 0`, "neither a tagsweep metric"},
		{`sum(rate(tagsweep_tags_scanned_total[5m])`, "does not parse"},
		{`sum by (pod, state) (tagsweep_run_shards{namespace="$namespace",state=~"done|failed"})`, ""},
		{`histogram_quantile(0.9, sum by (le, op) (rate(tagsweep_registry_request_duration_seconds_bucket{op="list"}[$__rate_interval])))`, ""},
		{`max by (namespace, job_name) (kube_job_failed{condition="true"}) and on (namespace, job_name) kube_job_created`, ""},
	}
	for _, tc := range tests {
		got := promQLProblems(tc.expr, exported)
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("promQLProblems(%q) = %q, want none", tc.expr, got)
		case tc.want != "" && !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }):
			t.Errorf("promQLProblems(%q) = %q, want one saying %q", tc.expr, got, tc.want)
		}
	}
}

// TestRunbookLinks: every alert links to its runbook section by an absolute URL, and the
// openshift-ci overlay points them all at its own page, keeping the sections.
func TestRunbookLinks(t *testing.T) {
	base := find[prometheusRule](t, build(t, "monitoring"), "PrometheusRule", "tagsweep")
	over := find[prometheusRule](t, build(t, "openshift-ci/monitoring"), "PrometheusRule", "tagsweep")
	data, err := os.ReadFile(filepath.Join("overlays", "openshift-ci", "monitoring", "runbook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := decodeStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	page := cm.Data["page"]
	for gi, g := range base.Spec.Groups {
		for ri, r := range g.Rules {
			u, err := url.Parse(r.Annotations["runbook_url"])
			if err != nil || !u.IsAbs() || u.Fragment == "" {
				t.Errorf("alert %s: runbook_url %q, want an absolute URL with a #section", r.Alert, r.Annotations["runbook_url"])
				continue
			}
			if got, want := over.Spec.Groups[gi].Rules[ri].Annotations["runbook_url"], page+"#"+u.Fragment; got != want {
				t.Errorf("openshift-ci/monitoring: alert %s runbook_url = %q, want %q", r.Alert, got, want)
			}
		}
	}
}

// TestPromtoolChecksRules runs promtool check rules on the built rule groups, when promtool
// is installed (Debian's prometheus package has it); it is skipped otherwise.
func TestPromtoolChecksRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	rule := find[prometheusRule](t, build(t, "monitoring"), "PrometheusRule", "tagsweep")
	data, err := json.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.json") // JSON is YAML
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
