package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/tagsweep/tagsweep/policy"
)

// TestPodsTrustNATS: every tagsweep pod authenticates to NATS as the user of its role, with
// the password from a Secret, and verifies the servers with the CA.
func TestPodsTrustNATS(t *testing.T) {
	for _, b := range podBuilds {
		for _, p := range pods(build(t, b)) {
			for _, c := range p.template.Spec.Containers {
				role := c.Args[0]
				var user, password bool
				for _, e := range c.Env {
					switch e.Name {
					case "TAGSWEEP_NATS_USER":
						user = e.Value == "tagsweep-"+role
					case "TAGSWEEP_NATS_PASSWORD":
						password = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Optional == nil
					}
				}
				if !user || !password {
					t.Errorf("%s %s/%s: NATS user tagsweep-%s %v, password from a Secret %v; want both", b, p.owner, c.Name, role, user, password)
				}
				if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--nats-ca=") }) {
					t.Errorf("%s %s/%s: no --nats-ca", b, p.owner, c.Name)
				}
			}
		}
	}
}

// TestWorkerFloorBelowTheTTL: the workers' minimum TTL is at most the coordinator's TTL, or
// every scheduled run would be refused; and the workers are held to the repositories the
// coordinator prunes.
func TestWorkerFloorBelowTheTTL(t *testing.T) {
	for _, b := range podBuilds {
		cfg := configOf(t, b)
		minTTL, err := policy.ParseTTL(setting(t, cfg, "min-ttl"))
		if err != nil || minTTL <= 0 {
			t.Errorf("%s: min-ttl %q, want a floor: %v", b, setting(t, cfg, "min-ttl"), err)
			continue
		}
		days, err := time.ParseDuration(setting(t, cfg, "ttl-days") + "h")
		if err != nil {
			t.Fatal(err)
		}
		if ttl := days * 24; minTTL > ttl {
			t.Errorf("%s: min-ttl %s is above the coordinator's TTL %s: every run would be refused", b, minTTL, ttl)
		}
	}
}

// TestNATSNetworkPolicy: only tagsweep's pods reach the NATS client port, only NATS servers
// their route port.
func TestNATSNetworkPolicy(t *testing.T) {
	data, err := os.ReadFile("nats/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(data, &np); err != nil {
		t.Fatal(err)
	}
	if !selects(t, &np.Spec.PodSelector, map[string]string{"app.kubernetes.io/name": "nats"}) {
		t.Fatal("the policy does not select the NATS servers")
	}
	want := map[int32]string{4222: "tagsweep", 6222: "nats"}
	seen := map[int32]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, port := range rule.Ports {
			p := port.Port.IntVal
			from, guarded := want[p]
			if !guarded {
				continue
			}
			seen[p] = true
			if len(rule.From) == 0 {
				t.Errorf("port %d is open to everyone", p)
			}
			for _, peer := range rule.From {
				if peer.PodSelector == nil || !selects(t, peer.PodSelector, map[string]string{"app.kubernetes.io/name": from}) ||
					selects(t, peer.PodSelector, map[string]string{"app.kubernetes.io/name": "other"}) || peer.IPBlock != nil {
					t.Errorf("port %d admits %+v, want only %s pods", p, peer, from)
				}
			}
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("port %d has no rule (closed: NATS would not work)", p)
		}
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Error("the policy does not restrict ingress")
	}
}
