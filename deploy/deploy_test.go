package deploy

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/tagsweep/tagsweep/telemetry"
	"github.com/tagsweep/tagsweep/worker"
)

const (
	configMountDir = "/etc/tagsweep"
	configKey      = "tagsweep.yaml"
	healthPortName = "http"
	healthPort     = 8080

	// workerStopBound is the longest a stopping worker takes: finishing or abandoning its
	// page, checkpointing and naking (see terminationGracePeriodSeconds in the Deployment).
	workerStopBound = worker.StopBound
)

// podBuilds are the builds whose pods the pod checks run on.
var podBuilds = []string{"base", "openshift-ci", "openshift-ci/run-once", "openshift-ci+keda"}

// pod is one pod template of a build, with the workload that owns it.
type pod struct {
	owner    string // Kind/name
	template *corev1.PodTemplateSpec
}

func pods(m manifest) []pod {
	var out []pod
	for _, d := range all[appsv1.Deployment](m, "Deployment") {
		out = append(out, pod{"Deployment/" + d.Name, &d.Spec.Template})
	}
	for _, c := range all[batchv1.CronJob](m, "CronJob") {
		out = append(out, pod{"CronJob/" + c.Name, &c.Spec.JobTemplate.Spec.Template})
	}
	for _, j := range all[batchv1.Job](m, "Job") {
		out = append(out, pod{"Job/" + j.Name, &j.Spec.Template})
	}
	return out
}

// parseArgs splits a tagsweep command line into its command and --flag=value pairs. Every
// flag must use the --name=value form (bare --name only for booleans), so that a value can
// never be taken for a command or the other way round.
func parseArgs(args []string) (cmd string, flags map[string]string, err error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, fmt.Errorf("args %q do not start with a command", args)
	}
	flags = map[string]string{}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--") {
			return "", nil, fmt.Errorf("argument %q is not a --flag", a)
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			value = "true"
		}
		if _, dup := flags[name]; dup {
			return "", nil, fmt.Errorf("flag --%s given twice", name)
		}
		flags[name] = value
	}
	return args[0], flags, nil
}

func lookupFlag(name string) (flagInfo, bool) {
	for _, f := range flagTable() {
		if f.name == name {
			return f, true
		}
	}
	return flagInfo{}, false
}

// envFlag returns the flag an environment variable sets.
func envFlag(env string) (flagInfo, bool) {
	for _, f := range flagTable() {
		if slices.Contains(f.env, env) {
			return f, true
		}
	}
	return flagInfo{}, false
}

// runtimeEnv are environment variables read by the Go runtime rather than by tagsweep.
var runtimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "GODEBUG"}

func TestContainerArgsAndEnvAreTheBinarys(t *testing.T) {
	for _, b := range podBuilds {
		for _, p := range pods(build(t, b)) {
			for _, c := range p.template.Spec.Containers {
				where := fmt.Sprintf("%s: %s container %s", b, p.owner, c.Name)
				if len(c.Command) != 0 {
					t.Errorf("%s: sets command %q; the image's entrypoint is tagsweep", where, c.Command)
				}
				cmd, flags, err := parseArgs(c.Args)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if cmd != "worker" && cmd != "coordinator" {
					t.Errorf("%s: command %q, want worker or coordinator", where, cmd)
				}
				for name := range flags {
					f, ok := lookupFlag(name)
					switch {
					case !ok:
						t.Errorf("%s: --%s is not a tagsweep flag", where, name)
					case !slices.Contains(f.commands, cmd):
						t.Errorf("%s: --%s is not a flag of tagsweep %s (only %v)", where, name, cmd, f.commands)
					case name == "token":
						t.Errorf("%s: --token on the command line shows the token in the pod spec; use the Secret-backed environment", where)
					}
				}
				if got := flags["config"]; got != configMountDir+"/"+configKey {
					t.Errorf("%s: --config=%q, want %s/%s", where, got, configMountDir, configKey)
				}
				for _, e := range c.Env {
					if slices.Contains(runtimeEnv, e.Name) {
						continue
					}
					f, ok := envFlag(e.Name)
					switch {
					case !ok:
						t.Errorf("%s: environment variable %s is read by neither tagsweep nor the Go runtime", where, e.Name)
					case !slices.Contains(f.commands, cmd):
						t.Errorf("%s: %s sets --%s, which tagsweep %s does not take", where, e.Name, f.name, cmd)
					}
				}
			}
		}
	}
}

func TestSecretsAreReferencedNeverIncluded(t *testing.T) {
	tokenEnv, _ := lookupFlag("token")
	for _, b := range podBuilds {
		m := build(t, b)
		for _, o := range m {
			if o.kind == "Secret" {
				t.Errorf("%s: contains Secret/%s; secrets are created out of band, never committed", b, o.name)
			}
		}
		for _, p := range pods(m) {
			tokenFromSecret := false
			for _, c := range p.template.Spec.Containers {
				for _, e := range c.Env {
					if !slices.Contains(tokenEnv.env, e.Name) {
						continue
					}
					if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						t.Errorf("%s: %s sets %s other than from a Secret", b, p.owner, e.Name)
						continue
					}
					tokenFromSecret = true
				}
				if _, flags, err := parseArgs(c.Args); err == nil {
					dc := flags["docker-config"]
					if dc == "" {
						t.Errorf("%s: %s container %s has no --docker-config", b, p.owner, c.Name)
						continue
					}
					checkMountedFromSecret(t, b, p, c, dc)
				}
			}
			if !tokenFromSecret {
				t.Errorf("%s: %s does not take QUAY_OAUTH_TOKEN from a Secret", b, p.owner)
			}
		}
	}
}

// checkMountedFromSecret checks that file is inside a volume mount backed by a Secret, with
// the item that becomes file.
func checkMountedFromSecret(t *testing.T, b string, p pod, c corev1.Container, file string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, vm.MountPath+"/")
		if !ok {
			continue
		}
		for _, v := range p.template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil {
				t.Errorf("%s: %s: %s is on volume %s, which is not a Secret", b, p.owner, file, v.Name)
				return
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel && it.Key == corev1.DockerConfigJsonKey {
					return
				}
			}
			t.Errorf("%s: %s: Secret volume %s has no item %s -> %s", b, p.owner, v.Name, corev1.DockerConfigJsonKey, rel)
			return
		}
	}
	t.Errorf("%s: %s: %s is not under any volume mount", b, p.owner, file)
}

func TestPodSecurity(t *testing.T) {
	for _, b := range podBuilds {
		for _, p := range pods(build(t, b)) {
			spec := p.template.Spec
			where := b + ": " + p.owner
			if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod securityContext %+v, want runAsNonRoot and seccomp RuntimeDefault", where, sc)
			}
			if spec.SecurityContext != nil && spec.SecurityContext.RunAsUser != nil {
				t.Errorf("%s: pins runAsUser; OpenShift's restricted SCC assigns the UID", where)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("%s: mounts a service account token; tagsweep never calls the Kubernetes API", where)
			}
			if spec.ServiceAccountName != "tagsweep" {
				t.Errorf("%s: serviceAccountName %q, want tagsweep", where, spec.ServiceAccountName)
			}
			for _, c := range spec.Containers {
				sc := c.SecurityContext
				ok := sc != nil &&
					sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
					sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem &&
					sc.RunAsNonRoot != nil && *sc.RunAsNonRoot &&
					sc.Privileged == nil &&
					sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) &&
					len(sc.Capabilities.Add) == 0
				if !ok {
					t.Errorf("%s container %s: securityContext %+v, want no privilege escalation, read-only root, non-root, drop ALL", where, c.Name, sc)
				}
				if !mountsEmptyDir(spec, c, "/tmp") {
					t.Errorf("%s container %s: /tmp is not an emptyDir (the root filesystem is read-only)", where, c.Name)
				}
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s container %s: resources %+v, want cpu and memory requests and a memory limit", where, c.Name, c.Resources)
				}
			}
		}
	}
}

func mountsEmptyDir(spec corev1.PodSpec, c corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name {
				return v.EmptyDir != nil
			}
		}
	}
	return false
}

func TestConfigFileIsMounted(t *testing.T) {
	for _, b := range podBuilds {
		m := build(t, b)
		cms := all[corev1.ConfigMap](m, "ConfigMap")
		for _, p := range pods(m) {
			for _, c := range p.template.Spec.Containers {
				var vol string
				for _, vm := range c.VolumeMounts {
					if vm.MountPath == configMountDir {
						vol = vm.Name
					}
				}
				var cmName string
				for _, v := range p.template.Spec.Volumes {
					if v.Name == vol && v.ConfigMap != nil {
						cmName = v.ConfigMap.Name
					}
				}
				i := slices.IndexFunc(cms, func(cm *corev1.ConfigMap) bool { return cm.Name == cmName })
				if i < 0 {
					t.Errorf("%s: %s container %s: %s is not a ConfigMap of the build (volume %q, ConfigMap %q)", b, p.owner, c.Name, configMountDir, vol, cmName)
					continue
				}
				if _, ok := cms[i].Data[configKey]; !ok {
					t.Errorf("%s: ConfigMap %s has no key %s", b, cmName, configKey)
				}
			}
		}
	}
}

// configOf returns the parsed tagsweep.yaml of a build.
func configOf(t *testing.T, b string) map[string]any {
	t.Helper()
	cms := all[corev1.ConfigMap](build(t, b), "ConfigMap")
	if len(cms) != 1 {
		t.Fatalf("%s: %d ConfigMaps, want 1", b, len(cms))
	}
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(cms[0].Data[configKey]), &cfg); err != nil {
		t.Fatalf("%s: %s: %v", b, configKey, err)
	}
	return cfg
}

// setting is a configuration value as text, from the file or else the flag's default.
func setting(t *testing.T, cfg map[string]any, name string) string {
	t.Helper()
	if v, ok := cfg[name]; ok {
		return fmt.Sprint(v)
	}
	f, ok := lookupFlag(name)
	if !ok {
		t.Fatalf("no flag %s", name)
	}
	return f.def
}

func TestConfigFileKeysAreFlags(t *testing.T) {
	for _, b := range podBuilds {
		for key := range configOf(t, b) {
			f, ok := lookupFlag(key)
			switch {
			case !ok:
				t.Errorf("%s: %s: key %q is not a tagsweep flag", b, configKey, key)
			case !slices.Contains(f.commands, "worker") && !slices.Contains(f.commands, "coordinator"):
				t.Errorf("%s: %s: key %q is taken by neither worker nor coordinator", b, configKey, key)
			case key == "token":
				t.Errorf("%s: %s holds the token; it belongs in a Secret", b, configKey)
			}
		}
	}
}

func TestOpenShiftCIOverlay(t *testing.T) {
	for _, b := range []string{"openshift-ci", "openshift-ci/run-once", "openshift-ci+keda"} {
		m := build(t, b)
		cfg := configOf(t, b)
		for key, want := range map[string]string{
			"registry": "quay.io", "repository": "[openshift/ci]", "ttl-days": "5", "confirm": "true",
		} {
			if got := setting(t, cfg, key); got != want {
				t.Errorf("%s: %s = %s, want %s", b, key, got, want)
			}
		}
		for _, o := range m {
			if o.namespace != "ci" {
				t.Errorf("%s: %s/%s in namespace %q, want ci", b, o.kind, o.name, o.namespace)
			}
		}
		for _, p := range pods(m) {
			for _, c := range p.template.Spec.Containers {
				if c.Image == "tagsweep" || !strings.Contains(c.Image, "/") {
					t.Errorf("%s: %s uses the base's placeholder image %q", b, p.owner, c.Image)
				}
				for _, e := range c.Env {
					if r := e.ValueFrom; e.Name == "QUAY_OAUTH_TOKEN" && (r == nil || r.SecretKeyRef == nil || r.SecretKeyRef.Name != "qci-pruner-credentials") {
						t.Errorf("%s: %s: QUAY_OAUTH_TOKEN not from Secret qci-pruner-credentials", b, p.owner)
					}
				}
			}
			for _, v := range p.template.Spec.Volumes {
				if v.Name == "registry-auth" && (v.Secret == nil || v.Secret.SecretName != "tagsweep-quay-robot") {
					t.Errorf("%s: %s: registry-auth volume is not Secret tagsweep-quay-robot", b, p.owner)
				}
			}
		}
	}
	if d := find[appsv1.Deployment](t, build(t, "openshift-ci"), "Deployment", "tagsweep-worker"); d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Errorf("openshift-ci: worker replicas %v, want 4", d.Spec.Replicas)
	}
}

func TestWorkerProbesMatchTheServer(t *testing.T) {
	// What the binary serves: telemetry's server on --http-addr, default :8080.
	_, port, err := net.SplitHostPort(telemetry.DefaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := lookupFlag("http-addr"); f.def != telemetry.DefaultAddr {
		t.Errorf("--http-addr default %q, telemetry.DefaultAddr %q", f.def, telemetry.DefaultAddr)
	}
	if port != strconv.Itoa(healthPort) {
		t.Fatalf("telemetry.DefaultAddr port %s, manifests use %d", port, healthPort)
	}
	srv := httptest.NewServer(telemetry.NewServer(telemetry.New(), telemetry.ServerConfig{}).Handler())
	t.Cleanup(srv.Close)

	for _, b := range podBuilds {
		d := find[appsv1.Deployment](t, build(t, b), "Deployment", "tagsweep-worker")
		c := d.Spec.Template.Spec.Containers[0]
		where := b + ": worker"
		_, flags, _ := parseArgs(c.Args)
		if _, p, err := net.SplitHostPort(flags["http-addr"]); err != nil || p != strconv.Itoa(healthPort) {
			t.Errorf("%s: --http-addr=%q, want port %d", where, flags["http-addr"], healthPort)
		}
		i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == healthPortName })
		if i < 0 || c.Ports[i].ContainerPort != healthPort {
			t.Errorf("%s: ports %+v, want %d named %s", where, c.Ports, healthPort, healthPortName)
		}
		for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			want := map[string]string{"liveness": telemetry.PathHealthz, "readiness": telemetry.PathReadyz}[name]
			if pr == nil || pr.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", where, name)
				continue
			}
			if pr.HTTPGet.Path != want || pr.HTTPGet.Port.String() != healthPortName {
				t.Errorf("%s: %s probe GET %s on %s, want %s on %s", where, name, pr.HTTPGet.Path, pr.HTTPGet.Port.String(), want, healthPortName)
			}
			resp, err := http.Get(srv.URL + pr.HTTPGet.Path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %s probe path %s answers %d on the telemetry server", where, name, pr.HTTPGet.Path, resp.StatusCode)
			}
		}
	}
}

func TestWorkerGracefulStop(t *testing.T) {
	for _, b := range podBuilds {
		d := find[appsv1.Deployment](t, build(t, b), "Deployment", "tagsweep-worker")
		g := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if g == nil || time.Duration(*g)*time.Second <= workerStopBound {
			t.Errorf("%s: worker terminationGracePeriodSeconds %v, want more than the worker's stop bound %s", b, g, workerStopBound)
		}
		if g != nil && *g != 60 {
			t.Errorf("%s: worker terminationGracePeriodSeconds %d; the Deployment's comment explains 60", b, *g)
		}
		if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: worker rolling update %+v, want maxUnavailable 0", b, s)
		}
	}
}

func TestCoordinatorSchedule(t *testing.T) {
	for _, b := range podBuilds {
		cj := find[batchv1.CronJob](t, build(t, b), "CronJob", "tagsweep-coordinator")
		s := cj.Spec
		if s.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("%s: concurrencyPolicy %q, want Forbid", b, s.ConcurrencyPolicy)
		}
		if s.StartingDeadlineSeconds == nil || *s.StartingDeadlineSeconds <= 0 {
			t.Errorf("%s: startingDeadlineSeconds %v, want set", b, s.StartingDeadlineSeconds)
		}
		if s.TimeZone == nil {
			t.Errorf("%s: no timeZone; the schedule would follow the controller's zone", b)
		}
		checkCoordinatorJob(t, b+": CronJob", s.JobTemplate.Spec)
		// Daily, and the deadline ends a run before the next one is due.
		if fields := strings.Fields(s.Schedule); len(fields) != 5 || fields[2] != "*" || fields[3] != "*" || fields[4] != "*" {
			t.Errorf("%s: schedule %q, want daily", b, s.Schedule)
		}
		if d := s.JobTemplate.Spec.ActiveDeadlineSeconds; d != nil && *d >= 24*3600 {
			t.Errorf("%s: activeDeadlineSeconds %d reaches into the next day's run", b, *d)
		}
	}
	for _, b := range []string{"openshift-ci/run-once"} {
		j := find[batchv1.Job](t, build(t, b), "Job", "tagsweep-run-once")
		checkCoordinatorJob(t, b+": Job", j.Spec)
		if j.Spec.TTLSecondsAfterFinished == nil {
			t.Errorf("%s: one-off Job without ttlSecondsAfterFinished stays forever", b)
		}
	}
}

func checkCoordinatorJob(t *testing.T, where string, s batchv1.JobSpec) {
	t.Helper()
	if s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds <= 0 {
		t.Errorf("%s: activeDeadlineSeconds %v, want set", where, s.ActiveDeadlineSeconds)
	}
	if s.BackoffLimit == nil {
		t.Errorf("%s: backoffLimit unset (the default is 6 attempts)", where)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q, want Never (podFailurePolicy needs it)", where, s.Template.Spec.RestartPolicy)
	}
	// Exit 2 (shards failed, delete cap) must fail the Job at once: a retry cannot help.
	failsOn2 := false
	if s.PodFailurePolicy != nil {
		for _, r := range s.PodFailurePolicy.Rules {
			if r.Action == batchv1.PodFailurePolicyActionFailJob && r.OnExitCodes != nil &&
				r.OnExitCodes.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && slices.Contains(r.OnExitCodes.Values, 2) &&
				r.OnExitCodes.ContainerName != nil && *r.OnExitCodes.ContainerName == s.Template.Spec.Containers[0].Name {
				failsOn2 = true
			}
		}
	}
	if !failsOn2 {
		t.Errorf("%s: no podFailurePolicy rule failing the Job on exit code 2", where)
	}
	// The run ID comes from the Job, so a retried pod resumes the run.
	c := s.Template.Spec.Containers[0]
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "TAGSWEEP_RUN_ID" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil ||
		!strings.HasPrefix(c.Env[i].ValueFrom.FieldRef.FieldPath, "metadata.labels['batch.kubernetes.io/") {
		t.Errorf("%s: TAGSWEEP_RUN_ID is not taken from the Job's labels", where)
	}
}

func TestRunOnceJobIsTheCronJobsJob(t *testing.T) {
	m := build(t, "openshift-ci/run-once")
	cj := find[batchv1.CronJob](t, m, "CronJob", "tagsweep-coordinator")
	j := find[batchv1.Job](t, m, "Job", "tagsweep-run-once")
	// Equal except for the run ID's source and the instance label.
	norm := func(s batchv1.JobSpec) batchv1.JobSpec {
		s = *s.DeepCopy()
		s.TTLSecondsAfterFinished = nil
		delete(s.Template.Labels, "app.kubernetes.io/instance")
		for i := range s.Template.Spec.Containers {
			c := &s.Template.Spec.Containers[i]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "TAGSWEEP_RUN_ID" })
		}
		return s
	}
	if got, want := norm(j.Spec), norm(cj.Spec.JobTemplate.Spec); !equality.Semantic.DeepEqual(got, want) {
		gy, _ := yaml.Marshal(got)
		wy, _ := yaml.Marshal(want)
		t.Errorf("run-once Job spec differs from the CronJob's job:\n--- Job\n%s\n--- CronJob\n%s", gy, wy)
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, lbls map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(lbls))
}

func TestSelectorsMatchPods(t *testing.T) {
	for _, b := range podBuilds {
		m := build(t, b)
		d := find[appsv1.Deployment](t, m, "Deployment", "tagsweep-worker")
		worker := d.Spec.Template.Labels
		cj := find[batchv1.CronJob](t, m, "CronJob", "tagsweep-coordinator")
		coordinator := cj.Spec.JobTemplate.Spec.Template.Labels

		if !selects(t, d.Spec.Selector, worker) {
			t.Errorf("%s: Deployment selector does not match its pods", b)
		}
		for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
			if !selects(t, tsc.LabelSelector, worker) || tsc.TopologyKey != corev1.LabelHostname {
				t.Errorf("%s: topology spread %+v does not spread worker pods over nodes", b, tsc)
			}
		}
		if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
			t.Errorf("%s: workers are not spread over nodes", b)
		}
		pdb := find[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget", "tagsweep-worker")
		if !selects(t, pdb.Spec.Selector, worker) || selects(t, pdb.Spec.Selector, coordinator) {
			t.Errorf("%s: PodDisruptionBudget selects %v; want workers only", b, pdb.Spec.Selector)
		}
		if pdb.Spec.MinAvailable != nil {
			t.Errorf("%s: PodDisruptionBudget uses minAvailable, which blocks drains when KEDA scales to few pods", b)
		}
		svc := find[corev1.Service](t, m, "Service", "tagsweep-worker-metrics")
		if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, worker) {
			t.Errorf("%s: metrics Service selector %v misses the workers", b, svc.Spec.Selector)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != healthPortName || svc.Spec.Ports[0].Name != healthPortName {
			t.Errorf("%s: metrics Service ports %+v, want one named %s targeting %s", b, svc.Spec.Ports, healthPortName, healthPortName)
		}
		np := find[networkingv1.NetworkPolicy](t, m, "NetworkPolicy", "tagsweep")
		for _, p := range pods(m) {
			if !selects(t, &np.Spec.PodSelector, p.template.Labels) {
				t.Errorf("%s: NetworkPolicy does not cover %s", b, p.owner)
			}
		}
	}
}

func TestNetworkPolicyAllowsWhatTagsweepNeeds(t *testing.T) {
	natsPort := 4222
	for _, b := range podBuilds {
		m := build(t, b)
		np := find[networkingv1.NetworkPolicy](t, m, "NetworkPolicy", "tagsweep")
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("%s: policyTypes %v, want Ingress and Egress", b, np.Spec.PolicyTypes)
		}
		// The NATS port the configuration points at.
		if u := setting(t, configOf(t, b), "nats-url"); !strings.HasSuffix(u, ":"+strconv.Itoa(natsPort)) {
			t.Errorf("%s: nats-url %s is not on port %d", b, u, natsPort)
		}
		egress := func(proto corev1.Protocol, port int) bool {
			for _, r := range np.Spec.Egress {
				for _, p := range r.Ports {
					if (p.Protocol == nil || *p.Protocol == proto) && p.Port != nil && p.Port.IntValue() == port {
						return true
					}
				}
			}
			return false
		}
		for _, want := range []struct {
			proto corev1.Protocol
			port  int
			what  string
		}{
			{corev1.ProtocolTCP, natsPort, "NATS"},
			{corev1.ProtocolUDP, 53, "DNS"},
			{corev1.ProtocolTCP, 53, "DNS over TCP"},
			{corev1.ProtocolTCP, 443, "the registry over HTTPS"},
		} {
			if !egress(want.proto, want.port) {
				t.Errorf("%s: NetworkPolicy blocks %s (%s %d)", b, want.what, want.proto, want.port)
			}
		}
		if egress(corev1.ProtocolTCP, 80) {
			t.Errorf("%s: NetworkPolicy allows plain HTTP out", b)
		}
		ingress := false
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.IntValue() == healthPort {
					ingress = true
				} else {
					t.Errorf("%s: NetworkPolicy admits port %v besides %d", b, p.Port, healthPort)
				}
			}
		}
		if !ingress {
			t.Errorf("%s: NetworkPolicy blocks metrics and probes on %d", b, healthPort)
		}
	}
}
