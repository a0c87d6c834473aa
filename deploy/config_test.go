package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tagsweep/tagsweep/config"
)

// TestPodsLoadAValidConfiguration starts each container's configuration the way the binary
// does: its volumes laid out under a temporary root (ConfigMap files, Secret items, emptyDirs),
// its environment set, its args parsed by the flags the command registers, then config.Load
// and Validate. The base is skipped: it deliberately leaves registry and repository to an
// overlay.
func TestPodsLoadAValidConfiguration(t *testing.T) {
	for _, b := range []string{"openshift-ci", "openshift-ci/run-once", "openshift-ci+keda"} {
		m := build(t, b)
		cms := all[corev1.ConfigMap](m, "ConfigMap")
		for _, p := range pods(m) {
			for _, c := range p.template.Spec.Containers {
				t.Run(b+"/"+p.owner+"/"+c.Name, func(t *testing.T) {
					root := layOutVolumes(t, p.template.Spec, c, cms)
					for _, e := range c.Env {
						val := e.Value
						switch {
						case e.ValueFrom == nil:
						case e.ValueFrom.SecretKeyRef != nil:
							val = "not-a-real-token"
						case e.ValueFrom.FieldRef != nil:
							val = fieldValue(t, p, e.ValueFrom.FieldRef.FieldPath)
						case e.ValueFrom.ResourceFieldRef != nil:
							continue // GOMEMLIMIT: the Go runtime's, not the configuration's
						}
						t.Setenv(e.Name, rebase(root, p.template.Spec, c, val))
					}
					args := make([]string, len(c.Args))
					for i, a := range c.Args {
						name, val, ok := strings.Cut(a, "=")
						if ok {
							a = name + "=" + rebase(root, p.template.Spec, c, val)
						}
						args[i] = a
					}
					cmd := args[0]
					fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
					config.Register(cmd, fs)
					if err := fs.Parse(args[1:]); err != nil {
						t.Fatalf("tagsweep %s %q: %v", cmd, args[1:], err)
					}
					if fs.NArg() != 0 {
						t.Errorf("tagsweep %s: stray arguments %q", cmd, fs.Args())
					}
					cfg, err := config.Load(cmd, fs)
					if err != nil {
						t.Fatalf("config.Load(%s): %v", cmd, err)
					}
					if err := cfg.Validate(); err != nil {
						t.Errorf("tagsweep %s would refuse to start:\n%v", cmd, err)
					}
					if cfg.Token.Reveal() != "not-a-real-token" {
						t.Errorf("tagsweep %s does not get the token from the Secret-backed environment", cmd)
					}
				})
			}
		}
	}
}

// layOutVolumes creates c's volume mounts under a temporary root, with the files Kubernetes
// would put there, and returns the root.
func layOutVolumes(t *testing.T, spec corev1.PodSpec, c corev1.Container, cms []*corev1.ConfigMap) string {
	t.Helper()
	root := t.TempDir()
	for _, vm := range c.VolumeMounts {
		dir := filepath.Join(root, vm.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var v *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == vm.Name {
				v = &spec.Volumes[i]
			}
		}
		if v == nil {
			t.Fatalf("mount %s names no volume %s", vm.MountPath, vm.Name)
		}
		switch {
		case v.ConfigMap != nil:
			for _, cm := range cms {
				if cm.Name != v.ConfigMap.Name {
					continue
				}
				for k, data := range cm.Data {
					write(t, filepath.Join(dir, k), data)
				}
			}
		case v.Secret != nil:
			for _, it := range v.Secret.Items {
				content := "not-a-secret"
				if it.Key == corev1.DockerConfigJsonKey {
					content = `{"auths":{}}`
				}
				write(t, filepath.Join(dir, it.Path), content)
			}
		}
	}
	return root
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rebase moves a path that lies in one of c's mounts under root.
func rebase(root string, _ corev1.PodSpec, c corev1.Container, val string) string {
	for _, vm := range c.VolumeMounts {
		if val == vm.MountPath || strings.HasPrefix(val, vm.MountPath+"/") {
			return filepath.Join(root, val)
		}
	}
	return val
}

// fieldValue is what the downward API gives for fieldPath, with the labels the Job controller
// adds to its pods.
func fieldValue(t *testing.T, p pod, fieldPath string) string {
	t.Helper()
	switch fieldPath {
	case "metadata.labels['" + batchv1.JobNameLabel + "']":
		if strings.HasPrefix(p.owner, "CronJob/") {
			return strings.TrimPrefix(p.owner, "CronJob/") + "-29433600" // <cronjob>-<scheduled minute>
		}
		return strings.TrimPrefix(p.owner, "Job/")
	case "metadata.labels['" + batchv1.ControllerUidLabel + "']":
		return "3f1c2a9e-8d4b-4e62-9a57-0c1d2e3f4a5b"
	}
	t.Fatalf("%s: no test value for fieldRef %s", p.owner, fieldPath)
	return ""
}
