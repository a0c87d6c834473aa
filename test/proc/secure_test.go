package proc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/tagsweep/tagsweep/proto"
)

// shippedUser is a NATS user of deploy/nats/values.yaml: its name and permissions.
type shippedUser struct {
	User        string `json:"user"`
	Permissions struct {
		Publish   struct{ Allow []string } `json:"publish"`
		Subscribe struct{ Allow []string } `json:"subscribe"`
	} `json:"permissions"`
}

// shippedUsers reads the NATS users the deployment ships, so that the suite runs tagsweep
// under exactly the permissions a locked-down installation has.
func shippedUsers(t testing.TB) []shippedUser {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Merge struct {
				Authorization struct {
					Users []shippedUser `json:"users"`
				} `json:"authorization"`
			} `json:"merge"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("deploy/nats/values.yaml: %v", err)
	}
	users := v.Config.Merge.Authorization.Users
	if len(users) == 0 {
		t.Fatal("deploy/nats/values.yaml has no NATS users")
	}
	return users
}

// secureNATS is the trust of a locked-down deployment: a throwaway CA, a server certificate
// for 127.0.0.1, one client certificate, and a NATS user per role, all made for one test and
// removed with it.
type secureNATS struct {
	dir, conf     string
	ca, cert, key string // PEM files: the CA, the client certificate and its key
	passwords     map[string]string
}

func newSecureNATS(t testing.TB) *secureNATS {
	t.Helper()
	s := &secureNATS{dir: t.TempDir(), passwords: map[string]string{}}
	caKey, caCert, caDER := newCert(t, "tagsweep test CA", nil, nil, true)
	s.ca = s.writePEM(t, "ca.pem", "CERTIFICATE", caDER)
	srvKey, _, srvDER := newCert(t, "nats", caCert, caKey, false)
	srvCert := s.writePEM(t, "server.pem", "CERTIFICATE", srvDER)
	srvKeyFile := s.writeKey(t, "server-key.pem", srvKey)
	cliKey, _, cliDER := newCert(t, "tagsweep", caCert, caKey, false)
	s.cert = s.writePEM(t, "client.pem", "CERTIFICATE", cliDER)
	s.key = s.writeKey(t, "client-key.pem", cliKey)

	var users []string
	quote := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, subj := range subjects {
			q[i] = fmt.Sprintf("%q", subj)
		}
		return strings.Join(q, ", ")
	}
	for _, u := range shippedUsers(t) {
		role := strings.TrimPrefix(u.User, "tagsweep-")
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		s.passwords[role] = hex.EncodeToString(b)
		users = append(users, fmt.Sprintf(`    {user: %q, password: %q, permissions: {publish: {allow: [%s]}, subscribe: {allow: [%s]}}}`,
			u.User, s.passwords[role], quote(u.Permissions.Publish.Allow), quote(u.Permissions.Subscribe.Allow)))
	}
	conf := fmt.Sprintf(`tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify: true
}
authorization {
  users: [
%s
  ]
}
`, srvCert, srvKeyFile, s.ca, strings.Join(users, "\n"))
	s.conf = filepath.Join(s.dir, "nats.conf")
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// args are the flags that give role its NATS credentials and TLS.
func (s *secureNATS) args(role string) []string {
	return []string{"--nats-ca", s.ca, "--nats-cert", s.cert, "--nats-key", s.key,
		"--nats-user", "tagsweep-" + role, "--nats-password", s.passwords[role]}
}

// options are the nats.go options of the same.
func (s *secureNATS) options(role string) []nats.Option {
	return []nats.Option{nats.RootCAs(s.ca), nats.ClientCert(s.cert, s.key), nats.UserInfo("tagsweep-"+role, s.passwords[role])}
}

func (s *secureNATS) writePEM(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *secureNATS) writeKey(t testing.TB, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s.writePEM(t, name, "PRIVATE KEY", der)
}

// newCert makes a key and a certificate for name, signed by parent (self-signed when nil),
// valid for 127.0.0.1 and localhost, for servers and clients alike.
func newCert(t testing.TB, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = nil, nil, nil
	}
	signer, signerKey := parent, parentKey
	if parent == nil {
		signer, signerKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

// TestSecureNATS runs the topology with NATS authentication and TLS on: a user per role
// allowed only tagsweep's subjects, client certificates verified. A run goes through to the
// exact end state; a coordinator without credentials cannot even start one; and a worker
// refuses a run record beyond its own floor, deleting nothing.
func TestSecureNATS(t *testing.T) {
	d := deploy(t, deployConfig{latency: 2 * time.Millisecond, secure: true})
	tags := append(dayTags(40, 8), dayTags(20, 30)...)
	d.loadTags(tags)
	w := d.worker("worker", "--repository", repo, "--min-ttl", "3d")
	w.workerID(t)

	t.Run("a run", func(t *testing.T) {
		c := d.coordinator("coordinator", "secure")
		if code := c.wait(t, runWithin); code != 0 {
			t.Fatalf("coordinator exit %d, want 0", code)
		}
		d.check("secure", tags, true)
		for _, p := range []*proc{w, c} {
			if out := p.out.String(); strings.Contains(strings.ToLower(out), "permissions violation") {
				t.Errorf("%s was refused a request by the shipped NATS permissions:\n%s", p.name, out)
			}
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		for name, args := range map[string][]string{
			"neither TLS nor a user": nil,
			"TLS without a user":     {"--nats-ca", d.secure.ca, "--nats-cert", d.secure.cert, "--nats-key", d.secure.key},
			"a user without TLS":     {"--nats-user", "tagsweep-coordinator", "--nats-password", d.secure.passwords["coordinator"]},
		} {
			all := append([]string{"coordinator", "--registry", d.simAddr, "--plain-http", "--repository", repo,
				"--run-id", "intruder", "--confirm", "--ttl-days", "0"}, d.natsArgs()...)
			c := d.start("intruder", append(all, args...)...)
			if code := c.wait(t, startAfter); code != 1 {
				t.Errorf("%s: coordinator exit %d, want 1", name, code)
			}
			if !strings.Contains(strings.ToLower(c.out.String()), "connecting to nats") {
				t.Errorf("%s: the coordinator does not say it could not connect:\n%s", name, c.out.String())
			}
		}
		if d.hasRun("intruder") {
			t.Error("a run without NATS credentials was recorded")
		}
	})

	t.Run("only tagsweep's subjects", func(t *testing.T) {
		nc, err := nats.Connect(d.natsURL, d.secure.options("worker")...)
		if err != nil {
			t.Fatalf("connecting as the worker: %v", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// A request the server refuses gets no answer: it ends at the deadline.
		refused, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := js.CreateStream(refused, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err == nil {
			t.Error("the worker's NATS user created a stream that is not tagsweep's")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := js.KeyValue(ctx, proto.BucketState); err != nil {
			t.Errorf("the worker's NATS user cannot read tagsweep's state bucket: %v", err)
		}
	})

	t.Run("the reader reads and writes nothing", func(t *testing.T) {
		for _, args := range [][]string{{"status", "secure"}, {"audit", "secure"}} {
			all := append(append([]string{args[0], "--nats-url", d.natsURL, "--log-format", "json"}, d.secure.args("reader")...), args[1:]...)
			p := d.start("reader-"+args[0], all...)
			if code := p.wait(t, startAfter); code != 0 {
				t.Errorf("%s as the reader: exit %d, want 0\n%s", args[0], code, p.out.String())
			}
		}
		nc, err := nats.Connect(d.natsURL, d.secure.options("reader")...)
		if err != nil {
			t.Fatalf("connecting as the reader: %v", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, proto.BucketState)
		if err != nil {
			t.Fatalf("the reader cannot bind tagsweep's state bucket: %v", err)
		}
		refused, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := kv.Put(refused, proto.RunKey("forged"), []byte("{}")); err == nil {
			t.Error("the reader wrote a run record")
		}
	})

	t.Run("beyond the floor", func(t *testing.T) {
		d.loadTags(dayTags(10, 2)) // two days old: eligible under a TTL of 1 day, within the worker's 3
		before := len(d.sim().Deleted)
		c := d.coordinator("coordinator-wide", "wide", "--ttl-days", "1")
		if code := c.wait(t, runWithin); code != 2 {
			t.Errorf("coordinator exit %d, want 2 (its shards refused)", code)
		}
		shards := d.shards("wide")
		refused := 0
		for _, s := range shards {
			if s.Kind == "prune" && s.State == "failed" && strings.Contains(s.LastError, "beyond this worker's floor") {
				refused++
			}
		}
		if refused == 0 {
			t.Errorf("no prune shard failed beyond the worker's floor: %+v", shards)
		}
		if after := len(d.sim().Deleted); after != before {
			t.Errorf("%d tags deleted by a run beyond the floor, want none", after-before)
		}
	})
}
