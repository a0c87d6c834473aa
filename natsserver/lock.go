package natsserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// LockFile is the name of the lock file Start creates in a store directory it is given.
const LockFile = "tagsweep.lock"

// ErrLocked: the store directory is held by another process (or another Start in this one).
var ErrLocked = errors.New("store directory is in use")

// Holder is what the process holding a store directory writes into its lock file.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// LockedError is Start's error for a store directory that another process holds. Holder is
// zero when that process had not written its details yet.
type LockedError struct {
	Dir    string
	Holder Holder
}

func (e *LockedError) Error() string {
	if e.Holder.PID == 0 {
		return fmt.Sprintf("%s: %v by another process, which has not written its details yet", e.Dir, ErrLocked)
	}
	return fmt.Sprintf("%s: %v by process %d on host %s, started %s", e.Dir, ErrLocked,
		e.Holder.PID, e.Holder.Host, e.Holder.Started.Format(time.RFC3339))
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// dirLock is an exclusive lock on a store directory: an OS file lock (flock on Unix,
// LockFileEx on Windows) on its LockFile, held while the file stays open. The kernel drops
// it when the process dies, so a crash never leaves a stale lock. The file itself is left in
// place on release: removing it would let a second process lock a file that a third has
// already replaced.
type dirLock struct{ f *os.File }

// lockDir takes the lock of dir, creating dir if needed, and writes this process's details
// into the lock file. A dir held by someone else is a *LockedError naming the holder.
func lockDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating nats store dir: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening the store lock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !held {
		defer f.Close()
		le := &LockedError{Dir: dir}
		if b, err := io.ReadAll(io.LimitReader(f, 4096)); err == nil {
			_ = json.Unmarshal(b, &le.Holder) // half-written details read as none
		}
		return nil, le
	}
	host, _ := os.Hostname()
	b, _ := json.Marshal(Holder{PID: os.Getpid(), Host: host, Started: time.Now().UTC().Truncate(time.Second)})
	if err := writeHolder(f, b); err != nil {
		_ = f.Close() // releases the lock
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &dirLock{f: f}, nil
}

func writeHolder(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(append(b, '\n'), 0); err != nil {
		return err
	}
	return f.Sync()
}

// release drops the lock.
func (l *dirLock) release() {
	if l != nil {
		_ = l.f.Close()
	}
}
