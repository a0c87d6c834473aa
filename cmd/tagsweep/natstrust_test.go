package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/tagsweep/tagsweep/natsserver"
)

// TestNATSTrust: a command without the NATS credentials is refused by a server that requires
// them, and gets through with each way of giving them; the secrets never show in its output.
func TestNATSTrust(t *testing.T) {
	clearEnv(t)
	const token, user, password = "nats-token-b7e1c9f04d", "tagsweep", "nats-password-91ac33"
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Options: func(o *server.Options) error {
		o.Users = []*server.User{{Username: user, Password: password}}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tokSrv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Options: func(o *server.Options) error {
		o.Authorization = token
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tokSrv.Close)
	user2, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user2.Seed()
	pub, _ := user2.PublicKey()
	nkeySrv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Options: func(o *server.Options) error {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nkeySrv.Close)
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	credsSrv, credsFile := startOperatorNATS(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		url  string
		args []string
		env  map[string]string
		ok   bool
	}{
		{name: "no credentials", url: srv.ClientURL()},
		{name: "wrong password", url: srv.ClientURL(), args: []string{"--nats-user", user, "--nats-password", "nope-nope"}},
		{name: "user and password", url: srv.ClientURL(), args: []string{"--nats-user", user}, env: map[string]string{"TAGSWEEP_NATS_PASSWORD": password}, ok: true},
		{name: "no token", url: tokSrv.ClientURL()},
		{name: "token file", url: tokSrv.ClientURL(), args: []string{"--nats-token-file", tokenFile}, ok: true},
		{name: "token from the environment", url: tokSrv.ClientURL(), env: map[string]string{"TAGSWEEP_NATS_TOKEN": token}, ok: true},
		{name: "no nkey", url: nkeySrv.ClientURL()},
		{name: "another nkey", url: nkeySrv.ClientURL(), args: []string{"--nats-nkey", otherFile}},
		{name: "nkey seed file", url: nkeySrv.ClientURL(), args: []string{"--nats-nkey", seedFile}, ok: true},
		{name: "no credentials file", url: credsSrv.ClientURL()},
		{name: "credentials file", url: credsSrv.ClientURL(), args: []string{"--nats-creds", credsFile}, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			for _, cmd := range []string{"status", "audit"} {
				args := append([]string{cmd, "--nats-url", tc.url, "--log-format", "json", "--log-level", "debug"}, tc.args...)
				if cmd == "audit" {
					args = append(args, "no-such-run")
				}
				code, out, errOut := execute(t, t.Context(), args...)
				authFailed := strings.Contains(strings.ToLower(errOut), "authorization violation")
				if tc.ok == authFailed {
					t.Errorf("%s: exit %d, authorization refused: %v; want refused: %v\n%s", cmd, code, authFailed, !tc.ok, errOut)
				}
				if !tc.ok && code != exitError {
					t.Errorf("%s without its credentials: exit %d, want %d", cmd, code, exitError)
				}
				for _, secret := range []string{token, password} {
					if strings.Contains(out+errOut, secret) {
						t.Errorf("%s prints the secret %q", cmd, secret)
					}
				}
			}
		})
	}
}

// startOperatorNATS starts a NATS server in operator mode (decentralized JWT authentication)
// trusting a throwaway operator, and writes a credentials file of a user of its one account.
func startOperatorNATS(t *testing.T) (*natsserver.Server, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, _ := okp.PublicKey()
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	must(err)
	operator, err := jwt.DecodeOperatorClaims(ojwt)
	must(err)
	akp, err := nkeys.CreateAccount()
	must(err)
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	must(err)
	skp, err := nkeys.CreateAccount() // the system account JetStream needs
	must(err)
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	must(err)
	ukp, err := nkeys.CreateUser()
	must(err)
	upub, _ := ukp.PublicKey()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	must(err)
	useed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	must(err)
	file := filepath.Join(t.TempDir(), "user.creds")
	must(os.WriteFile(file, creds, 0o600))
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", Options: func(o *server.Options) error {
		o.TrustedOperators = []*jwt.OperatorClaims{operator}
		r := &server.MemAccResolver{}
		if err := r.Store(apub, ajwt); err != nil {
			return err
		}
		if err := r.Store(spub, sjwt); err != nil {
			return err
		}
		o.AccountResolver, o.SystemAccount = r, spub
		return nil
	}})
	must(err)
	t.Cleanup(srv.Close)
	return srv, file
}
