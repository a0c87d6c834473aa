package proto

// AuditBatch is the body of one message on the audit stream: a run's audit events in the
// order they were recorded, usually every event of one page of one shard. Batching keeps the
// stream at one message per page rather than one per deleted tag. Each event carries its own
// run, shard and repository; the batch's are those of the claim that wrote it (Attempt is the
// delivery it held, 0 for an event appended outside a claim). A batch is never empty.
type AuditBatch struct {
	V          int          `json:"v"`
	RunID      string       `json:"run"`
	ShardID    string       `json:"shard"`
	Repository string       `json:"repository"`
	Attempt    int          `json:"attempt"`
	Events     []AuditEvent `json:"events"`
}
