package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The kustomizations the tests build, by name. They are built from an in-memory copy of this
// directory, so that a test-only overlay (KEDA on top of openshift-ci) can sit beside them.
var buildDirs = map[string]string{
	"base":                    "/deploy/base",
	"openshift-ci":            "/deploy/overlays/openshift-ci",
	"openshift-ci/run-once":   "/deploy/overlays/openshift-ci/run-once",
	"openshift-ci+keda":       "/deploy/test/openshift-ci-keda",
	"monitoring":              "/deploy/monitoring",
	"openshift-ci/monitoring": "/deploy/overlays/openshift-ci/monitoring",
}

// testOverlays are written into the in-memory copy only. openshift-ci-keda is the openshift-ci
// overlay with the KEDA component added the way docs/operations.md says: listed before the
// settings component, so that settings (namespace, names) apply to the ScaledObject too.
var testOverlays = map[string]string{
	"/deploy/test/openshift-ci-keda/kustomization.yaml": `
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
components:
  - ../../components/keda
  - ../../overlays/openshift-ci/settings
`,
}

// object is one built Kubernetes object, decoded strictly into its API type.
type object struct {
	kind, name, namespace string
	value                 any
}

type manifest []object

// find returns the object of kind and name, typed.
func find[T any](t *testing.T, m manifest, kind, name string) *T {
	t.Helper()
	for _, o := range m {
		if o.kind == kind && o.name == name {
			v, ok := o.value.(*T)
			if !ok {
				t.Fatalf("%s/%s decoded as %T", kind, name, o.value)
			}
			return v
		}
	}
	t.Fatalf("no %s/%s in the build", kind, name)
	return nil
}

// all returns every object of kind, typed.
func all[T any](m manifest, kind string) []*T {
	var out []*T
	for _, o := range m {
		if o.kind == kind {
			out = append(out, o.value.(*T))
		}
	}
	return out
}

// apiTypes maps each kind the manifests may contain to its apiVersion and Go type. A kind
// outside this table fails the build test: add it here, with a type to decode it into.
var apiTypes = map[string]struct {
	apiVersion string
	new        func() any
}{
	"ConfigMap":           {"v1", func() any { return new(corev1.ConfigMap) }},
	"Service":             {"v1", func() any { return new(corev1.Service) }},
	"ServiceAccount":      {"v1", func() any { return new(corev1.ServiceAccount) }},
	"Deployment":          {"apps/v1", func() any { return new(appsv1.Deployment) }},
	"CronJob":             {"batch/v1", func() any { return new(batchv1.CronJob) }},
	"Job":                 {"batch/v1", func() any { return new(batchv1.Job) }},
	"PodDisruptionBudget": {"policy/v1", func() any { return new(policyv1.PodDisruptionBudget) }},
	"NetworkPolicy":       {"networking.k8s.io/v1", func() any { return new(networkingv1.NetworkPolicy) }},
	"ScaledObject":        {"keda.sh/v1alpha1", func() any { return new(scaledObject) }},
	"PodMonitor":          {"monitoring.coreos.com/v1", func() any { return new(podMonitor) }},
	"PrometheusRule":      {"monitoring.coreos.com/v1", func() any { return new(prometheusRule) }},
}

// The custom resources, as far as the manifests use them. Every field the manifests set must
// be here: decoding rejects unknown fields, so a typo cannot pass silently.

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type alertRule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// decodeStrict decodes one YAML document into v, refusing duplicate keys, unknown fields and
// trailing data.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

var (
	fsOnce  sync.Once
	memFS   filesys.FileSystem
	fsErr   error
	buildMu sync.Mutex
	builtBy = map[string]manifest{}
)

// deployFS copies this directory (without Go files) into an in-memory file system at /deploy,
// and adds the test-only overlays.
func deployFS(t *testing.T) filesys.FileSystem {
	t.Helper()
	fsOnce.Do(func() {
		mem := filesys.MakeFsInMemory()
		fsErr = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return mem.WriteFile("/deploy/"+filepath.ToSlash(p), data)
		})
		for p, data := range testOverlays {
			if fsErr == nil {
				fsErr = mem.WriteFile(p, []byte(data))
			}
		}
		memFS = mem
	})
	if fsErr != nil {
		t.Fatalf("copying deploy/ into memory: %v", fsErr)
	}
	return memFS
}

// build runs kustomize on the named build and decodes every object strictly. Results are
// cached: the manifests do not change during a test run.
func build(t *testing.T, name string) manifest {
	t.Helper()
	dir, ok := buildDirs[name]
	if !ok {
		t.Fatalf("no build named %q", name)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if m, ok := builtBy[name]; ok {
		return m
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(deployFS(t), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", name, err)
	}
	var m manifest
	for _, r := range rm.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s/%s as YAML: %v", name, r.GetKind(), r.GetName(), err)
		}
		at, ok := apiTypes[r.GetKind()]
		if !ok {
			t.Fatalf("%s: %s/%s: kind %s has no API type in apiTypes", name, r.GetKind(), r.GetName(), r.GetKind())
		}
		if r.GetApiVersion() != at.apiVersion {
			t.Errorf("%s: %s/%s: apiVersion %s, want %s", name, r.GetKind(), r.GetName(), r.GetApiVersion(), at.apiVersion)
		}
		v := at.new()
		if err := decodeStrict(doc, v); err != nil {
			t.Fatalf("%s: %s/%s does not decode strictly into %T: %v\n%s", name, r.GetKind(), r.GetName(), v, err, doc)
		}
		m = append(m, object{kind: r.GetKind(), name: r.GetName(), namespace: r.GetNamespace(), value: v})
	}
	builtBy[name] = m
	return m
}

func TestBuildsDecodeStrictly(t *testing.T) {
	// What each build must hold, by kind and name: a manifest silently dropped from a
	// kustomization fails here.
	core := []string{
		"ServiceAccount/tagsweep", "Deployment/tagsweep-worker", "Service/tagsweep-worker-metrics",
		"PodDisruptionBudget/tagsweep-worker", "CronJob/tagsweep-coordinator",
		"NetworkPolicy/tagsweep", "ConfigMap/tagsweep-config",
	}
	tests := []struct {
		build string
		want  []string
	}{
		{"base", core},
		{"openshift-ci", core},
		{"openshift-ci/run-once", append(slices.Clone(core), "Job/tagsweep-run-once")},
		{"openshift-ci+keda", append(slices.Clone(core), "ScaledObject/tagsweep-worker")},
		{"monitoring", []string{"PodMonitor/tagsweep", "PrometheusRule/tagsweep", "ConfigMap/tagsweep-dashboard"}},
		{"openshift-ci/monitoring", []string{"PodMonitor/tagsweep", "PrometheusRule/tagsweep", "ConfigMap/tagsweep-dashboard"}},
	}
	for _, tc := range tests {
		t.Run(tc.build, func(t *testing.T) {
			m := build(t, tc.build)
			var got []string
			for _, o := range m {
				name := o.name
				if o.kind == "ConfigMap" {
					// The generator adds a content hash: compare the base name.
					name = name[:strings.LastIndex(name, "-")]
				}
				got = append(got, o.kind+"/"+name)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("kustomize build %s =\n  %v\nwant\n  %v", tc.build, got, want)
			}
		})
	}
}

func TestDecodeStrictRejectsTypos(t *testing.T) {
	// The strict decoding the other tests rely on must catch what a loose decode would not.
	tests := []struct {
		name, doc string
		into      any
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 3\n", new(appsv1.Deployment)},
		{"misplaced field", "apiVersion: v1\nkind: Service\nspec:\n  port: 80\n", new(corev1.Service)},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\ndata: {a: x, a: y}\n", new(corev1.ConfigMap)},
		{"wrong type", "apiVersion: batch/v1\nkind: CronJob\nspec:\n  startingDeadlineSeconds: soon\n", new(batchv1.CronJob)},
		{"custom resource", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nspec:\n  lagThreshold: '4'\n", new(scaledObject)},
	}
	for _, tc := range tests {
		if err := decodeStrict([]byte(tc.doc), tc.into); err == nil {
			t.Errorf("%s: decodeStrict accepted %q", tc.name, tc.doc)
		}
	}
}
