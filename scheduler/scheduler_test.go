package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
)

type countingJob struct {
	calls atomic.Int32
	out   Outcome
	err   error
}

func (j *countingJob) Refresh(ctx context.Context) (Outcome, error) {
	j.calls.Add(1)
	return j.out, j.err
}

func unit(name, fp string, job Job) Unit {
	return Unit{Target: state.NewTarget("wshoto", name, time.UTC), Job: job, Policy: DefaultPolicy(time.Minute), Logger: slog.New(slog.DiscardHandler), Fingerprint: fp}
}

func TestManagerStartsStopsAndRestarts(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		set := &state.Set{}
		m := NewManager(ctx, set)
		a, b := &countingJob{}, &countingJob{}
		ua, ub := unit("a", "1", a), unit("b", "1", b)
		m.Apply([]Unit{ua, ub})
		synctest.Wait()
		if a.calls.Load() != 1 || b.calls.Load() != 1 || !set.Ready() || len(set.Targets()) != 2 {
			t.Fatalf("after start: a=%d b=%d ready=%v", a.calls.Load(), b.calls.Load(), set.Ready())
		}
		// Same fingerprint: undisturbed. Changed: restarted at once, state kept.
		ua2 := ua
		ub2 := ub
		ub2.Fingerprint = "2"
		m.Apply([]Unit{ua2, ub2})
		synctest.Wait()
		if a.calls.Load() != 1 || b.calls.Load() != 2 {
			t.Errorf("after reload: a=%d (want 1) b=%d (want 2)", a.calls.Load(), b.calls.Load())
		}
		// Removed: its loop stops and it leaves the set.
		m.Apply([]Unit{ua2})
		if got := set.Targets(); len(got) != 1 || got[0].Name != "a" || set.Get("wshoto", "b") != nil {
			t.Errorf("after removal: %v", got)
		}
		m.Stop()
	})
}

func TestPolicy(t *testing.T) {
	p := DefaultPolicy(10 * time.Minute)
	p.Rand = func() float64 { return 0.999999 }
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if got := p.Backoff(1); got > 30*time.Second || got < 29*time.Second {
		t.Errorf("first backoff %s", got)
	}
	if got := p.Backoff(30); got > 30*time.Minute {
		t.Errorf("backoff not capped: %s", got)
	}
	// Poll waits are jittered within ±20 %.
	if got := p.next(now, Outcome{}, nil, 0); got < 8*time.Minute || got > 12*time.Minute {
		t.Errorf("poll wait %s", got)
	}
	// Current data waits for the next data moment plus at most the spread.
	next := now.Add(3 * time.Hour)
	if got := p.next(now, Outcome{Current: true, NextData: next}, nil, 0); got < 3*time.Hour || got > 3*time.Hour+5*time.Minute {
		t.Errorf("current wait %s", got)
	}
	// An error that says when to come back is obeyed.
	quota := &apicall.Error{Reason: apicall.ReasonQuota, RetryAfter: now.Add(10 * time.Hour)}
	if got := p.next(now, Outcome{}, quota, 1); got < 10*time.Hour {
		t.Errorf("retry-after ignored: %s", got)
	}
	if got := p.next(now, Outcome{}, errors.New("x"), 1); got > 30*time.Second {
		t.Errorf("plain error wait %s", got)
	}
}
