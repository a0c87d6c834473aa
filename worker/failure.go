package worker

import "errors"

// failure is why a shard's work stopped short of the end of its range, classified for
// settling its delivery: a retryable failure gives the shard back for a later delivery (and
// fails it on the message's last), a permanent one fails it at once. cause is the error the
// shard record keeps. An error of the work that is not a failure (a ledger write that
// failed, the context's error on a stop) is settled by what it is.
type failure struct {
	cause     error
	permanent bool
}

// retryable classifies cause as a failure a later delivery may mend: a list or a delete the
// registry did not answer, a client that could not be built.
func retryable(cause error) error { return &failure{cause: cause} }

// permanent classifies cause as a failure no retry can mend: the run's policy or settings
// are unusable, the registry refuses tag deletes, the run's delete budget is spent.
func permanent(cause error) error { return &failure{cause: cause, permanent: true} }

func (f *failure) Error() string { return f.cause.Error() }
func (f *failure) Unwrap() error { return f.cause }

// classify returns the failure err is, or nil when it is none.
func classify(err error) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	return nil
}

// isPermanent reports whether err is a permanent failure.
func isPermanent(err error) bool {
	f := classify(err)
	return f != nil && f.permanent
}

// errCapReached: the run's delete budget (Policy.MaxDeletes) is used up. It is permanent for
// the shard, and stops the run.
var errCapReached = errors.New("max deletes reached")
