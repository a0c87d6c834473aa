package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
)

// repoRE is the repository name grammar of the OCI distribution spec: lower-case
// path components separated by '/', each made of alphanumerics joined by '.', '_',
// '__' or runs of '-'.
var repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

var hostRE = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$`)

// Values of --delete-api.
const (
	DeleteAPIV2     = "v2"
	DeleteAPIQuayV1 = "quay-v1"
)

// MaxPageSize is the largest tags/list page tagsweep asks for (registries may cap it lower).
const MaxPageSize = 1000

// Validate reports every problem of c for its command at once (errors.Join), each
// naming its flag. Nothing should run when it returns an error.
func (c Config) Validate() error {
	errs := slices.Clone(c.empties)
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	takes := func(flag string) bool {
		f, ok := Lookup(flag)
		return ok && f.For(c.Command)
	}

	if !slices.Contains(Commands(), c.Command) {
		return fmt.Errorf("unknown command %q", c.Command)
	}

	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		bad("log-format", "%q is not auto, text or json", c.LogFormat)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("log-level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if takes("nats-url") && strings.TrimSpace(c.NATSURL) == "" {
		bad("nats-url", "required")
	}

	demo := c.Command == CmdRun && c.Demo
	if takes("registry") {
		switch {
		case c.Command == CmdWorker && c.Registry == "" && c.Token != "":
			bad("registry", "required with --token: a worker sends the token only to this registry")
		case c.Registry == "" && !demo && c.Command != CmdWorker:
			bad("registry", "required (the registry host[:port], e.g. quay.io)")
		case c.Registry != "" && demo:
			bad("registry", "not allowed with --demo, which serves its own registry")
		case c.Registry != "":
			if err := checkHost(c.Registry); err != nil {
				bad("registry", "%v", err)
			}
		}
	}
	if takes("repository") {
		if len(c.Repositories) == 0 && !demo {
			bad("repository", "required (e.g. openshift/ci)")
		}
		seen := map[string]bool{}
		for _, r := range c.Repositories {
			if len(r) > 255 || !repoRE.MatchString(r) {
				bad("repository", "%q is not a repository name (lower-case ns/name path, no registry host or tag)", r)
			}
			if seen[r] {
				bad("repository", "%q given twice", r)
			}
			seen[r] = true
		}
	}

	if takes("ttl-days") {
		if c.TTLDays < -1 {
			bad("ttl-days", "%d is below -1", c.TTLDays)
		}
		if c.TTL != "" {
			if c.TTLDaysSet {
				bad("ttl", "conflicts with --ttl-days: give one of them")
			}
			if d, err := policy.ParseTTL(c.TTL); err != nil {
				bad("ttl", "%v", err)
			} else if d < 0 {
				bad("ttl", "%q is negative", c.TTL)
			}
		}
		if c.RunID != "" && !proto.ValidToken(c.RunID) {
			bad("run-id", "%q is not 1 to 64 of [A-Za-z0-9_-]", c.RunID)
		}
		if _, err := keyspace.ParseWidth(c.ShardBy); err != nil {
			bad("shard-by", "%q is not day or hour", c.ShardBy)
		}
		if c.MaxDeletes < 0 {
			bad("max-deletes", "%d is negative", c.MaxDeletes)
		}
		errs = append(errs, c.checkRules()...)
	}

	if takes("page-size") && (c.PageSize < 1 || c.PageSize > MaxPageSize) {
		bad("page-size", "%d is not between 1 and %d", c.PageSize, MaxPageSize)
	}
	if takes("docker-config") && c.DockerConfig != "" {
		if st, err := os.Stat(c.DockerConfig); err != nil {
			bad("docker-config", "%v", err)
		} else if st.IsDir() {
			bad("docker-config", "%s is a directory", c.DockerConfig)
		}
	}
	if takes("auth-host") {
		for _, h := range c.AuthHosts {
			if err := checkHost(h); err != nil {
				bad("auth-host", "%v", err)
			}
		}
	}
	if takes("delete-api") {
		switch c.DeleteAPI {
		case DeleteAPIV2, "": // "" is the default, v2
		case DeleteAPIQuayV1:
			if c.Token == "" {
				bad("delete-api", "quay-v1 needs --token (QUAY_OAUTH_TOKEN)")
			}
		default:
			bad("delete-api", "%q is not v2 or quay-v1", c.DeleteAPI)
		}
	}
	if takes("repository-alias") {
		for _, a := range c.RepoAliases {
			if _, err := preserve.ParseAlias(a); err != nil {
				bad("repository-alias", "%v", err)
			}
		}
	}
	if takes("max-rps") && c.MaxRPS < 0 {
		bad("max-rps", "%g is negative", c.MaxRPS)
	}
	if takes("workers") && c.Workers < 1 {
		bad("workers", "%d is below 1", c.Workers)
	}
	if takes("slots") && c.Slots < 1 {
		bad("slots", "%d is below 1", c.Slots)
	}
	if takes("delete-concurrency") && c.DeleteConc < 1 {
		bad("delete-concurrency", "%d is below 1", c.DeleteConc)
	}
	if takes("split-after") && c.SplitAfter < 0 {
		bad("split-after", "%s is negative", c.SplitAfter)
	}
	if takes("stale-after") && c.StaleAfter < 0 {
		bad("stale-after", "%s is negative", c.StaleAfter)
	}
	if takes("ack-wait") && c.AckWait < time.Second {
		bad("ack-wait", "%s is below 1s", c.AckWait)
	}
	if takes("max-deliver") && c.MaxDeliver < 1 {
		bad("max-deliver", "%d is below 1", c.MaxDeliver)
	}
	if takes("nats-replicas") && (c.NATSReplicas < 1 || c.NATSReplicas > 5) {
		bad("nats-replicas", "%d is not between 1 and 5", c.NATSReplicas)
	}
	if takes("http-addr") && c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("http-addr", "%v", err)
		}
	}
	if takes("demo") && demo {
		if c.DemoTags < 1 {
			bad("demo-tags", "%d is below 1", c.DemoTags)
		}
		if c.DemoDays < 1 {
			bad("demo-days", "%d is below 1", c.DemoDays)
		}
		if c.DemoLatency < 0 {
			bad("demo-latency", "%s is negative", c.DemoLatency)
		}
	}
	if c.Command == CmdSim {
		if _, _, err := net.SplitHostPort(c.SimAddr); err != nil {
			bad("addr", "%v", err)
		}
		if c.SimTags < 0 {
			bad("tags", "%d is negative", c.SimTags)
		}
		if c.SimDays < 1 {
			bad("days", "%d is below 1", c.SimDays)
		}
		if c.SimLatency < 0 {
			bad("latency", "%s is negative", c.SimLatency)
		}
		if c.SimAdmin {
			if host, _, err := net.SplitHostPort(c.SimAddr); err == nil && !loopback(host) {
				bad("admin", "the admin endpoint is for loopback only; --addr %s is not a loopback address", c.SimAddr)
			}
		}
		if c.SimSeed < 0 {
			bad("seed", "%d is negative", c.SimSeed)
		}
	}
	return errors.Join(errs...)
}

// checkHost accepts host or host:port, and says what is wrong with anything else.
func checkHost(s string) error {
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q has a scheme: give host[:port] only (use --plain-http for http)", s)
	}
	if strings.ContainsAny(s, "/ \t@?#") {
		return fmt.Errorf("%q is not host[:port]", s)
	}
	host := s
	if strings.Contains(s, ":") && !strings.HasSuffix(s, "]") {
		h, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("%q is not host[:port]: %w", s, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not 1 to 65535", s, port)
		}
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if !hostRE.MatchString(host) {
		return fmt.Errorf("%q is not host[:port]", s)
	}
	return nil
}

// loopback reports whether host is a loopback name or address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
