package deploy

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/telemetry"
)

func TestKEDAScalesOnTheWorkersConsumer(t *testing.T) {
	const b = "openshift-ci+keda"
	m := build(t, b)
	so := find[scaledObject](t, m, "ScaledObject", "tagsweep-worker")
	d := find[appsv1.Deployment](t, m, "Deployment", "tagsweep-worker")
	if ref := so.Spec.ScaleTargetRef; ref.Name != d.Name || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Errorf("scaleTargetRef %+v, want Deployment %s", ref, d.Name)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("with KEDA the Deployment still sets replicas %d; re-applying would fight the autoscaler", *d.Spec.Replicas)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "nats-jetstream" {
		t.Fatalf("triggers %+v, want one nats-jetstream trigger", so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	if md["stream"] != proto.StreamShards || md["consumer"] != proto.ConsumerWorkers {
		t.Errorf("trigger stream/consumer %s/%s, want %s/%s (proto); a wrong name scales to the maximum",
			md["stream"], md["consumer"], proto.StreamShards, proto.ConsumerWorkers)
	}
	// One pod per --slots shards: lag counts pending and in-flight shards.
	slots := setting(t, configOf(t, b), "slots")
	if md["lagThreshold"] != slots {
		t.Errorf("lagThreshold %q, want the workers' slots %s", md["lagThreshold"], slots)
	}
	// The monitoring endpoint is the headless Service of the NATS release the config points at,
	// on the monitor port of deploy/nats/values.yaml.
	host, port, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"])
	if err != nil {
		t.Fatalf("natsServerMonitoringEndpoint: %v", err)
	}
	natsURL := setting(t, configOf(t, b), "nats-url")
	svc, ns, _ := strings.Cut(hostOf(t, natsURL), ".")
	if want := svc + "-headless." + ns; host != want {
		t.Errorf("monitoring endpoint host %s, want %s (headless Service of %s)", host, want, natsURL)
	}
	if want := strconv.Itoa(natsValue[int](t, "config", "monitor", "port")); port != want {
		t.Errorf("monitoring endpoint port %s, want the chart's monitor port %s", port, want)
	}
	if md["account"] == "" {
		t.Errorf("trigger without account ($G when NATS has no accounts)")
	}
	if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 1 {
		t.Errorf("replica bounds %v..%v, want both set", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
}

func hostOf(t *testing.T, natsURL string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(natsURL, "nats://")
	if !ok {
		t.Fatalf("nats-url %q is not nats://", natsURL)
	}
	host, _, err := net.SplitHostPort(rest)
	if err != nil {
		t.Fatalf("nats-url %q: %v", natsURL, err)
	}
	return host
}

// natsValues is deploy/nats/values.yaml.
func natsValues(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		t.Fatalf("nats/values.yaml: %v", err)
	}
	return v
}

func natsValue[T any](t *testing.T, path ...string) T {
	t.Helper()
	var cur any = natsValues(t)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("nats/values.yaml: %s is not a map", strings.Join(path, "."))
		}
		cur = m[p]
	}
	var zero T
	switch any(zero).(type) {
	case int:
		if f, ok := cur.(float64); ok { // JSON numbers
			return any(int(f)).(T)
		}
	}
	v, ok := cur.(T)
	if !ok {
		t.Fatalf("nats/values.yaml: %s = %v (%T), want a %T", strings.Join(path, "."), cur, cur, zero)
	}
	return v
}

func TestNATSValues(t *testing.T) {
	if got := natsValue[int](t, "config", "cluster", "replicas"); got != 3 {
		t.Errorf("config.cluster.replicas = %d, want 3", got)
	}
	for _, path := range [][]string{
		{"config", "cluster", "enabled"},
		{"config", "jetstream", "enabled"},
		{"config", "jetstream", "fileStore", "enabled"},
		{"config", "jetstream", "fileStore", "pvc", "enabled"},
		{"config", "monitor", "enabled"},
	} {
		if !natsValue[bool](t, path...) {
			t.Errorf("%s is not true", strings.Join(path, "."))
		}
	}
	// Streams and buckets must be replicated over the three servers.
	for _, b := range podBuilds {
		if got := setting(t, configOf(t, b), "nats-replicas"); got != "3" {
			t.Errorf("%s: nats-replicas %s, want 3 for the three-server cluster of deploy/nats", b, got)
		}
		if h := hostOf(t, setting(t, configOf(t, b), "nats-url")); !strings.HasPrefix(h, "nats.nats.") {
			t.Errorf("%s: nats-url host %s is not the release nats in namespace nats", b, h)
		}
	}
}

// TestAlertRules: every rule is an alert with a severity and a summary, and the two the
// operations guide relies on are there. promql_test.go checks the expressions.
func TestAlertRules(t *testing.T) {
	rule := find[prometheusRule](t, build(t, "monitoring"), "PrometheusRule", "tagsweep")
	alerts := 0
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts++
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %q: want alert, expr, a severity and a summary", r.Alert)
			}
		}
	}
	for _, want := range []string{"TagsweepRunFailed", "TagsweepNoProgress"} {
		if !slices.ContainsFunc(rule.Spec.Groups[0].Rules, func(r alertRule) bool { return r.Alert == want }) {
			t.Errorf("no alert %s", want)
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts")
	}
}

func TestPodMonitorScrapesTheHealthPort(t *testing.T) {
	pm := find[podMonitor](t, build(t, "monitoring"), "PodMonitor", "tagsweep")
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("podMetricsEndpoints %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port != healthPortName || ep.Path != telemetry.PathMetrics {
		t.Errorf("PodMonitor scrapes %s on port %q, want %s on %q", ep.Path, ep.Port, telemetry.PathMetrics, healthPortName)
	}
	for _, b := range podBuilds {
		for _, p := range pods(build(t, b)) {
			if !selects(t, &pm.Spec.Selector, p.template.Labels) {
				t.Errorf("PodMonitor does not select %s of %s", p.owner, b)
			}
			if !slices.ContainsFunc(p.template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == ep.Port }) {
				t.Errorf("%s: %s has no port named %s", b, p.owner, ep.Port)
			}
		}
	}
}
