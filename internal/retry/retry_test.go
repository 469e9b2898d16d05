package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDoRetriesUntilSuccess(t *testing.T) {
	var waits []time.Duration
	calls := 0
	n, err := Do(context.Background(), Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}, func() error {
		if calls++; calls < 5 {
			return errors.New("down")
		}
		return nil
	}, func(_ int, _ error, w time.Duration) { waits = append(waits, w) })
	if err != nil || n != 5 {
		t.Fatalf("Do = %d, %v; want 5 attempts and success", n, err)
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
}

func TestDoStopsOnPermanentAndOnContext(t *testing.T) {
	bad := errors.New("bad record")
	n, err := Do(context.Background(), Backoff{}, func() error { return Permanent(bad) }, nil)
	if n != 1 || err != bad {
		t.Fatalf("permanent: %d, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = Do(ctx, Backoff{Min: time.Millisecond}, func() error { return errors.New("down") }, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx: %v", err)
	}
}
