package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/natsserver"
)

// connectNATS connects to the NATS servers at url. name identifies the process to
// the server (nats server's connz). Reconnects are unbounded: a worker outlives a
// NATS rolling restart.
func connectNATS(cfg config.Config, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := cfg.NATSURL
	trust, err := natsTrust(cfg.NATS)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats at %s: %w", redactNATSURL(url), err)
	}
	nc, err := nats.Connect(url, append(append([]nats.Option{
		nats.Name(name),
		nats.Timeout(10 * time.Second),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", slog.Any("err", err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}, trust...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats at %s: %w", redactNATSURL(url), err)
	}
	return nc, nil
}

// connectJetStream connects to the NATS at cfg.NATSURL as client name (connectNATS, with opts
// after its own) and returns its JetStream API. closeAll flushes and closes the connection
// (closeNATS); js.Conn() is the connection.
func connectJetStream(cfg config.Config, name string, log *slog.Logger, opts ...nats.Option) (js jetstream.JetStream, closeAll func(), err error) {
	nc, err := connectNATS(cfg, name, log, opts...)
	if err != nil {
		return nil, nil, err
	}
	if js, err = newJetStream(nc); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, func() { closeNATS(nc, log) }, nil
}

// connectLedger connects to the NATS at cfg.NATSURL as client name, or, with cfg.DataDir,
// starts an embedded server on that store of a `tagsweep run` (it must exist; a store that a
// running `tagsweep run` holds is an error wrapping natsserver.ErrLocked), and returns its
// JetStream API. where names the ledger for messages; closeAll closes the connection and any
// server.
func connectLedger(cfg config.Config, name string, log *slog.Logger) (js jetstream.JetStream, where string, closeAll func(), err error) {
	if cfg.DataDir == "" {
		js, closeAll, err := connectJetStream(cfg, name, log)
		if err != nil {
			return nil, "", nil, err
		}
		return js, redactNATSURL(cfg.NATSURL), closeAll, nil
	}
	if st, err := os.Stat(cfg.DataDir); err != nil {
		return nil, "", nil, fmt.Errorf("--data-dir: %w", err)
	} else if !st.IsDir() {
		return nil, "", nil, fmt.Errorf("--data-dir: %s is not a directory", cfg.DataDir)
	}
	js, closeAll, err = startEmbedded(natsserver.Config{Dir: cfg.DataDir}, log)
	if err != nil {
		return nil, "", nil, err
	}
	return js, cfg.DataDir, closeAll, nil
}

// startEmbedded starts an embedded NATS server (in process, no TCP listener) as ncfg says,
// connects to it and returns its JetStream API. closeAll closes the connection, then the
// server.
func startEmbedded(ncfg natsserver.Config, log *slog.Logger) (js jetstream.JetStream, closeAll func(), err error) {
	ns, err := natsserver.Start(ncfg)
	if err != nil {
		return nil, nil, err
	}
	nc, err := ns.Connect()
	if err == nil {
		js, err = newJetStream(nc)
		if err != nil {
			nc.Close()
		}
	}
	if err != nil {
		ns.Close()
		return nil, nil, err
	}
	return js, func() { closeNATS(nc, log); ns.Close() }, nil
}

// newJetStream is nc's JetStream API.
func newJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// closeNATS closes nc after a round trip to the server, so that what the process sent
// last (a worker's Nak handing a shard back on a graceful stop) has been processed, not
// just written: a lost Nak leaves the shard idle until its AckWait runs out.
func closeNATS(nc *nats.Conn, log *slog.Logger) {
	if nc.IsConnected() {
		if err := nc.FlushTimeout(5 * time.Second); err != nil && log != nil {
			log.Warn("flushing nats before closing", slog.Any("err", err))
		}
	}
	nc.Close()
}

// redactNATSURL hides credentials in a NATS URL list for error messages.
func redactNATSURL(url string) string {
	return config.Config{NATSURL: url}.Redacted().NATSURL
}
