// Package retry calls an operation until it succeeds, waiting longer after
// each failure (exponential backoff between a minimum and a maximum). The
// pipelines, the ClickHouse copies and the SQL adapter all retry through it:
// a database or a broker that is down is waited for, without limit, and a
// failure that retrying cannot mend is marked Permanent by the operation.
package retry

import (
	"context"
	"errors"
	"time"
)

// Backoff bounds the waits between attempts: the first is Min, each next one
// twice the last, at most Max. Zero values mean 100ms and 10s.
type Backoff struct {
	Min, Max time.Duration
}

// permanent marks an error that retrying will not mend.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that retrying will not mend: Do returns it at
// once (unwrapped).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls op until it returns nil or a Permanent error, or ctx is done. After
// each failure, failed (when set) is told the attempt number, the error and
// the wait before the next attempt. Do returns the number of attempts made
// and op's last error (nil on success, ctx's error when ctx ended first).
func Do(ctx context.Context, b Backoff, op func() error, failed func(attempt int, err error, wait time.Duration)) (int, error) {
	if b.Min <= 0 {
		b.Min = 100 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = max(b.Min, 10*time.Second)
	}
	wait := b.Min
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return attempt, nil
		}
		var p permanent
		if errors.As(err, &p) {
			return attempt, p.err
		}
		if ctx.Err() != nil {
			return attempt, ctx.Err()
		}
		if failed != nil {
			failed(attempt, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, b.Max)
	}
}
