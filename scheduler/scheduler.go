// Package scheduler decides when each target calls its upstream: right
// after start, then not again until new data can exist, polling at a
// bounded interval while it is not published, and backing off after
// failures. It is the only place that decides when to call.
package scheduler

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
)

// Outcome is what a successful refresh learned.
type Outcome struct {
	// Current is true when the snapshot holds the newest data that can
	// exist now; there is nothing to ask before NextData.
	Current bool
	// NextData is the earliest moment newer data can exist.
	NextData time.Time
	// NotBefore, when not Current, is the earliest moment the missing data
	// can be published: polling starts then rather than at once.
	NotBefore time.Time
}

// Job refreshes one target's snapshot. It returns an error only when the
// upstream could not be read; "not published yet" is a success that is not
// Current.
type Job interface {
	Refresh(ctx context.Context) (Outcome, error)
}

// Policy holds the timing knobs of a loop.
type Policy struct {
	// PollInterval is the longest wait between calls while expected data
	// is not published; each wait is 85-95 % of it, so that data show
	// within PollInterval of their publication.
	PollInterval time.Duration
	// BackoffMin and BackoffMax bound the wait after consecutive failures,
	// doubling from min; each wait is drawn from its upper half.
	BackoffMin, BackoffMax time.Duration
	// Spread delays the first call after new data can exist by up to this
	// much, so exporters sharing a quota do not all call at 00:00.
	Spread time.Duration
	// Rand returns a float in [0, 1); nil uses math/rand/v2.
	Rand func() float64
	// Learn, when set, holds when this target's data were published on
	// previous days. Once it knows enough, polling starts one interval
	// before the earliest publication seen rather than as soon as data can
	// exist.
	Learn *Publication
}

// DefaultPolicy returns the policy for a given poll interval.
func DefaultPolicy(poll time.Duration) Policy {
	return Policy{PollInterval: poll, BackoffMin: 30 * time.Second, BackoffMax: 30 * time.Minute, Spread: 5 * time.Minute}
}

func (p Policy) rand() float64 {
	if p.Rand != nil {
		return p.Rand()
	}
	return rand.Float64()
}

// Backoff returns the wait after the n-th consecutive failure (n ≥ 1).
func (p Policy) Backoff(n int) time.Duration {
	d := p.BackoffMin
	for i := 1; i < n && d < p.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.BackoffMax)
	return d/2 + time.Duration(p.rand()*float64(d/2))
}

// next returns how long to wait after an attempt that ended at now.
func (p Policy) next(now time.Time, out Outcome, err error, failures int) time.Duration {
	if err != nil {
		wait := p.Backoff(failures)
		if e, ok := apicall.AsError(err); ok && e.RetryAfter.After(now.Add(wait)) {
			wait = e.RetryAfter.Sub(now) + time.Duration(p.rand()*float64(p.Spread))
		}
		return wait
	}
	var offset time.Duration
	if p.Learn != nil {
		offset, _ = p.Learn.StartOffset(p.PollInterval)
	}
	if out.Current && out.NextData.After(now) {
		return out.NextData.Add(offset).Sub(now) + time.Duration(p.rand()*float64(p.Spread))
	}
	if !out.Current && out.NotBefore.After(now) {
		return out.NotBefore.Add(offset).Sub(now) + time.Duration(p.rand()*float64(p.Spread))
	}
	return time.Duration(float64(p.PollInterval) * (0.85 + 0.1*p.rand()))
}

// Run refreshes t with job until ctx ends: first at once, then as policy
// and outcomes say. One refresh is in flight at a time by construction.
func Run(ctx context.Context, job Job, p Policy, t *state.Target, logger *slog.Logger) {
	failures := 0
	var due, lastMiss time.Time // the data awaited: when they could first exist, the last poll that missed them
	for {
		began := time.Now()
		out, err := job.Refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if err != nil {
			failures++
			reason := apicall.ReasonOf(err)
			t.RecordFailure(now, reason, err.Error())
			logger.Warn("refresh failed", "reason", reason, "consecutive_failures", failures, "err", err)
		} else {
			failures = 0
			t.RecordSuccess(now)
			logger.Debug("refresh done", "current", out.Current, "duration", now.Sub(began))
			due, lastMiss = p.observe(now, out, due, lastMiss)
		}
		wait := p.next(now, out, err, failures)
		t.SetNextCall(now.Add(wait))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// observe follows the data awaited across successful refreshes and tells
// Learn when they were published.
func (p Policy) observe(now time.Time, out Outcome, due, lastMiss time.Time) (time.Time, time.Time) {
	if !out.Current {
		if !due.IsZero() && !now.Before(due) {
			lastMiss = now
		}
		if due.IsZero() && !out.NotBefore.IsZero() {
			due = out.NotBefore
		}
		return due, lastMiss
	}
	if !due.IsZero() && !now.Before(due) && p.Learn != nil {
		p.Learn.Add(Observation{Due: due, LastMiss: lastMiss, FirstHit: now})
	}
	return out.NextData, time.Time{}
}

// Unit is one target to run: its state, its job and how to time it.
type Unit struct {
	Target *state.Target
	Job    Job
	Policy Policy
	Logger *slog.Logger
	// Fingerprint identifies the configuration the job was built from; a
	// changed fingerprint restarts the loop.
	Fingerprint string
}

type running struct {
	fingerprint string
	cancel      context.CancelFunc
	done        chan struct{}
}

// Manager runs one loop per unit and applies new sets of units on reload.
type Manager struct {
	set *state.Set
	ctx context.Context

	mu      sync.Mutex
	running map[*state.Target]*running
}

// NewManager returns a manager whose loops live at most as long as ctx, and
// that publishes the live targets to set.
func NewManager(ctx context.Context, set *state.Set) *Manager {
	return &Manager{ctx: ctx, set: set, running: map[*state.Target]*running{}}
}

// Apply makes units the running set: loops of removed targets stop (and
// their series go), new ones start, changed ones restart with their state
// kept, unchanged ones go on undisturbed.
func (m *Manager) Apply(units []Unit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[*state.Target]bool{}
	targets := make([]*state.Target, 0, len(units))
	var stopped []*running
	var start []Unit
	for _, u := range units {
		keep[u.Target] = true
		targets = append(targets, u.Target)
		r, ok := m.running[u.Target]
		if ok && r.fingerprint == u.Fingerprint {
			continue
		}
		if ok {
			r.cancel()
			stopped = append(stopped, r)
		}
		start = append(start, u)
	}
	for t, r := range m.running {
		if !keep[t] {
			r.cancel()
			stopped = append(stopped, r)
			delete(m.running, t)
		}
	}
	m.set.Replace(targets)
	for _, r := range stopped {
		<-r.done
	}
	for _, u := range start {
		ctx, cancel := context.WithCancel(m.ctx)
		r := &running{fingerprint: u.Fingerprint, cancel: cancel, done: make(chan struct{})}
		m.running[u.Target] = r
		go func() {
			defer close(r.done)
			Run(ctx, u.Job, u.Policy, u.Target, u.Logger)
		}()
	}
}

// Stop cancels every loop and waits for them to return.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, r := range m.running {
		r.cancel()
		<-r.done
		delete(m.running, t)
	}
}
