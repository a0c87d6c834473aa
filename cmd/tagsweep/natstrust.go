package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/tagsweep/tagsweep/config"
)

// natsTrust is how to authenticate to NATS and verify its servers, as configured (the nats-*
// keys): at most one way to authenticate, and TLS when a CA or a client certificate is given.
// A token file is read here, so that a rotated secret is picked up by the next process.
func natsTrust(t config.NATSTrust) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case t.Creds != "":
		opts = append(opts, nats.UserCredentials(t.Creds))
	case t.NKey != "":
		opt, err := nats.NkeyOptionFromSeed(t.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", t.NKey, err)
		}
		opts = append(opts, opt)
	case t.User != "":
		opts = append(opts, nats.UserInfo(t.User, t.Password.Reveal()))
	case t.Token != "":
		opts = append(opts, nats.Token(t.Token.Reveal()))
	case t.TokenFile != "":
		b, err := os.ReadFile(t.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("nats token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, fmt.Errorf("nats token file %s is empty", t.TokenFile)
		}
		opts = append(opts, nats.Token(tok))
	}
	if t.CA != "" {
		opts = append(opts, nats.RootCAs(t.CA))
	}
	if t.Cert != "" {
		opts = append(opts, nats.ClientCert(t.Cert, t.Key))
	}
	return opts, nil
}
