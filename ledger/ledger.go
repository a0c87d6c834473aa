// Package ledger is the one place a run's state lives and changes: the run and shard records in
// JetStream KV, the shard work queue, the audit stream and the per-repository leases. The
// coordinator and the workers both go through it, so every rule of the shard lifecycle is
// written once:
//
//   - a shard record is created (KV Create) before its message is published, and its message is
//     published with a de-duplicating ID on a subject that can hold one pending message only;
//   - every change of a record is one compare-and-swap update of the whole record (state, owner,
//     attempt and times together);
//   - a writer whose compare-and-swap fails has lost the record: it gets ErrFenced and must stop
//     touching the shard, including its message.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// Errors callers branch on.
var (
	// ErrFenced: a compare-and-swap failed, so someone else changed the record. For a claim this
	// means the shard has a new holder: stop working on it and do not ack, nak or term its
	// message (a late ack would ack the new holder's delivery).
	ErrFenced = errors.New("record changed by another writer (fenced)")
	// ErrNotFound: no such run or shard record.
	ErrNotFound = errors.New("record not found")
	// ErrExists: CreateRun found the run already recorded.
	ErrExists = errors.New("record already exists")
	// ErrTerminal: Claim found the shard done or failed: there is nothing left to do.
	ErrTerminal = errors.New("shard already finished")
	// ErrBusy: Claim found the shard running under a live owner that was not superseded by a
	// newer delivery. The message should come back later.
	ErrBusy = errors.New("shard held by another live worker")
	// ErrLeaseHeld: another live run holds the repository lease (see *LeaseHeldError).
	ErrLeaseHeld = errors.New("repository lease held by another run")
	// ErrBadRecord: a stored record could not be decoded or has a newer wire version.
	ErrBadRecord = errors.New("unreadable record")
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultReplicas      = 1
	DefaultAckWait       = 2 * time.Minute
	DefaultMaxDeliver    = 5
	DefaultMaxAckPending = 1024
	DefaultDuplicates    = 30 * time.Minute
	DefaultShardMaxAge   = 7 * 24 * time.Hour
	DefaultAuditMaxAge   = 90 * 24 * time.Hour
	stateHistory         = 5
	casRetries           = 64
)

// Config holds the JetStream settings of a ledger. Every process of a deployment (coordinator
// and workers) must use the same values: Open creates or updates the shared stream and
// consumer with them. Zero values mean the documented defaults.
type Config struct {
	// Replicas of every stream and bucket: 1 for a single server (default), 3 in a cluster.
	Replicas int
	// Storage of every stream and bucket: jetstream.FileStorage (the zero value, default) or
	// jetstream.MemoryStorage (tests).
	Storage jetstream.StorageType
	// AckWait is how long a delivered shard message may go without an ack or an InProgress
	// heartbeat before JetStream redelivers it (default 2m). Workers heartbeat every AckWait/3.
	AckWait time.Duration
	// MaxDeliver is how many times a shard message is delivered before its shard is failed
	// (default 5). A graceful-stop Nak counts as a delivery.
	MaxDeliver int
	// MaxAckPending bounds the shard messages delivered and not yet acked, across all workers
	// (default 1024); it must be at least workers x slots.
	MaxAckPending int
	// Duplicates is the publish de-duplication window of the shard stream (default 30m).
	Duplicates time.Duration
	// AuditMaxAge is how long audit events are kept (default 90 days).
	AuditMaxAge time.Duration
	// AuditMaxBytes caps the audit stream's size: past it the oldest events go first.
	// 0 = no cap.
	AuditMaxBytes int64
	// NoDryRunAudit: dry runs record no audit events (a real run's events are always
	// recorded).
	NoDryRunAudit bool
	// RecordsMaxAge is how long a run or shard record is kept after it was last written:
	// the state bucket's TTL. 0 = kept forever. It must be longer than any run lasts.
	RecordsMaxAge time.Duration
	// StaleAfter: a running record not written for this long is stale (see Stale): it may be
	// claimed by a delivery that is not newer than the record's attempt, and counts as
	// abandoned when it is on its last delivery (FailAbandoned). Default 5 x AckWait:
	// workers write the record once per page, and a page's deletes are bounded by the worker
	// separately. Newer deliveries take over at once: JetStream only redelivers after the
	// holder went silent.
	StaleAfter time.Duration
}

func (c Config) withDefaults() Config {
	c.Replicas = positiveOr(c.Replicas, DefaultReplicas)
	c.AckWait = positiveOr(c.AckWait, DefaultAckWait)
	c.MaxDeliver = positiveOr(c.MaxDeliver, DefaultMaxDeliver)
	c.MaxAckPending = positiveOr(c.MaxAckPending, DefaultMaxAckPending)
	c.Duplicates = positiveOr(c.Duplicates, DefaultDuplicates)
	c.AuditMaxAge = positiveOr(c.AuditMaxAge, DefaultAuditMaxAge)
	c.StaleAfter = positiveOr(c.StaleAfter, 5*c.AckWait)
	return c
}

// positiveOr is v when it is positive, else def.
func positiveOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Ledger is a handle on a deployment's JetStream state. It is safe for concurrent use.
type Ledger struct {
	js     jetstream.JetStream
	cfg    Config
	state  jetstream.KeyValue
	leases jetstream.KeyValue
	cons   jetstream.Consumer
	now    func() time.Time
}

// Open creates (or updates to cfg) the shard work-queue stream and its durable consumer, the
// state and lease buckets and the audit stream, and returns a ledger over them. Retention
// (AuditMaxAge, AuditMaxBytes, RecordsMaxAge) is applied to streams and buckets that exist
// already too.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ledger, error) {
	cfg = cfg.withDefaults()
	l := &Ledger{js: js, cfg: cfg, now: time.Now}
	err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:                 proto.StreamShards,
		Description:          "tagsweep shard work queue",
		Subjects:             []string{proto.SubjectShardsPrefix + ".>"},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              cfg.Storage,
		Replicas:             cfg.Replicas,
		Duplicates:           min(cfg.Duplicates, DefaultShardMaxAge),
		MaxAge:               DefaultShardMaxAge,
		Discard:              jetstream.DiscardNew,
		MaxMsgsPerSubject:    1,
		DiscardNewPerSubject: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", proto.StreamShards, err)
	}
	l.cons, err = ensureConsumer(ctx, js, proto.StreamShards, jetstream.ConsumerConfig{
		Durable:       proto.ConsumerWorkers,
		Description:   "tagsweep workers (shared by every worker)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
		FilterSubject: proto.SubjectShardsPrefix + ".>",
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", proto.ConsumerWorkers, err)
	}
	l.state, err = ensureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      proto.BucketState,
		Description: "tagsweep run and shard records",
		History:     stateHistory,
		TTL:         max(cfg.RecordsMaxAge, 0),
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating bucket %s: %w", proto.BucketState, err)
	}
	l.leases, err = ensureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      proto.BucketLeases,
		Description: "tagsweep per-repository run leases",
		History:     1,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating bucket %s: %w", proto.BucketLeases, err)
	}
	err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        proto.StreamAudit,
		Description: "tagsweep deletion audit events",
		Subjects:    []string{proto.SubjectAuditPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.AuditMaxAge,
		MaxBytes:    auditMaxBytes(cfg.AuditMaxBytes),
		Discard:     jetstream.DiscardOld,
		Duplicates:  min(2*time.Minute, cfg.AuditMaxAge),
	})
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr.ErrorCode == errCodeStorageExceeded && cfg.AuditMaxBytes > 0 {
		return nil, fmt.Errorf("creating stream %s: its byte cap of %d (audit-max-bytes) exceeds the storage the NATS server has left: %w",
			proto.StreamAudit, cfg.AuditMaxBytes, err)
	}
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", proto.StreamAudit, err)
	}
	return l, nil
}

// errCodeStorageExceeded is JetStream's error code for a stream whose limits reserve more
// storage than the server has.
const errCodeStorageExceeded jetstream.ErrorCode = 10047

// Every process of a run (coordinator, each worker, status) opens the ledger, often at the same
// moment. Updating a stream while another process creates a consumer on it trips a data race in
// nats-server v2.15.2 (seen under -race), and an update that changes nothing is wasted work, so
// the ensure functions read what exists first and write only when a setting we own differs.

// ensureStream creates the stream, or updates it when one of the settings in want differs.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	if st, err := js.Stream(ctx, want.Name); err == nil {
		have := st.CachedInfo().Config
		if have.Retention == want.Retention && have.Storage == want.Storage &&
			max(have.Replicas, 1) == max(want.Replicas, 1) && have.MaxAge == want.MaxAge &&
			// The server reports an unset (0) byte limit as -1.
			auditMaxBytes(have.MaxBytes) == auditMaxBytes(want.MaxBytes) &&
			have.Duplicates == want.Duplicates && have.Discard == want.Discard &&
			// The server reports an unset (0) per-subject limit as -1.
			max(have.MaxMsgsPerSubject, 0) == max(want.MaxMsgsPerSubject, 0) &&
			have.DiscardNewPerSubject == want.DiscardNewPerSubject &&
			slices.Equal(have.Subjects, want.Subjects) {
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err := js.CreateOrUpdateStream(ctx, want)
	return err
}

// ensureConsumer binds the durable consumer, creating or updating it when a setting differs.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if c, err := js.Consumer(ctx, stream, want.Durable); err == nil {
		have := c.CachedInfo().Config
		if have.AckPolicy == want.AckPolicy && have.AckWait == want.AckWait &&
			have.MaxDeliver == want.MaxDeliver && have.MaxAckPending == want.MaxAckPending &&
			have.FilterSubject == want.FilterSubject && max(have.Replicas, 1) == max(want.Replicas, 1) {
			return c, nil
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return js.CreateOrUpdateConsumer(ctx, stream, want)
}

// ensureKeyValue binds the bucket, creating or updating it when a setting differs.
func ensureKeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if kv, err := js.KeyValue(ctx, want.Bucket); err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, err
		}
		bs, known := st.(*jetstream.KeyValueBucketStatus)
		if known && bs.StreamInfo() != nil {
			have := bs.StreamInfo().Config
			if int(st.History()) == int(max(want.History, 1)) && have.Storage == want.Storage &&
				max(have.Replicas, 1) == max(want.Replicas, 1) && have.MaxAge == want.TTL {
				return kv, nil
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	return js.CreateOrUpdateKeyValue(ctx, want)
}

// auditMaxBytes is the stream limit of a byte cap: -1 (none) for 0 or less.
func auditMaxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Config returns the ledger's configuration with defaults applied.
func (l *Ledger) Config() Config { return l.cfg }

// Consumer returns the durable pull consumer that every worker takes shard messages from.
func (l *Ledger) Consumer() jetstream.Consumer { return l.cons }

// opTimeout bounds one JetStream request of the ledger whatever the caller's deadline. A
// request can go unanswered (a clustered stream changing leader may drop it, a server may
// stop mid-request); without a bound, a caller with a long deadline (a run's) would hang on
// it, where a bounded one fails and retries.
const opTimeout = 5 * time.Second

// opContext bounds one request by opTimeout.
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

// get reads key from kv and decodes it into v, returning the revision.
func get(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if err := decode(e.Value(), v); err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return e.Revision(), nil
}

// versioned is implemented by every record through its V field; decode checks it.
func decode(data []byte, v any) error {
	var hdr struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(data, &hdr); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if hdr.V > proto.Version {
		return fmt.Errorf("%w: wire version %d is newer than %d", ErrBadRecord, hdr.V, proto.Version)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	return nil
}

// update is one compare-and-swap write; a revision mismatch becomes ErrFenced.
func update(ctx context.Context, kv jetstream.KeyValue, key string, v any, rev uint64) (uint64, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encoding %s: %w", key, err)
	}
	n, err := kv.Update(ctx, key, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("updating %s at revision %d: %w", key, rev, ErrFenced)
	}
	if err != nil {
		return 0, fmt.Errorf("updating %s: %w", key, err)
	}
	return n, nil
}

// create writes key only if it does not exist; an existing key becomes ErrExists.
func create(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encoding %s: %w", key, err)
	}
	n, err := kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("%s: %w", key, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", key, err)
	}
	return n, nil
}

// Idle reports whether some worker waits for a shard message while none is queued: slots are
// free and no shard is there to fill them. It is what a worker holding a shard with much left
// asks before it splits the shard for them (work stealing). The answer comes from the queue
// itself: each worker has a pull request open on the consumer while it has a free slot.
func (l *Ledger) Idle(ctx context.Context) (bool, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	info, err := l.cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("reading consumer %s: %w", proto.ConsumerWorkers, err)
	}
	return info.NumPending == 0 && info.NumWaiting > 0, nil
}

// Transient reports whether a JetStream failure may pass by itself, so that trying again later
// is worth it: no responders, a timeout or JetStream unavailable while a cluster restarts a
// node or elects a leader. Not transient: a closed connection, or an API error that is the
// caller's fault (4xx, such as a configuration that conflicts with the existing stream).
func Transient(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 || apiErr.Code == 0
	}
	return true
}
