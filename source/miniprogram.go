package source

import (
	"context"
	"log/slog"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
)

// RetainFetcher is the part of the wechat client a job needs.
type RetainFetcher interface {
	Retain(ctx context.Context, k wechat.Kind, start calendar.Date) (wechat.Retain, error)
}

// MiniprogramJob refreshes one mini-program's retention.
//
// A cohort period's key k is published only once k more periods have
// ended, so the newest complete period carries key 0 alone. Key k is served
// from cohort P_k (k periods before the newest complete one, P_0) when it
// is published, else from the newest older cohort that has it. Answers are
// kept in memory: a cohort is fetched again only when the key it must
// supply is missing from what was kept, so a matured cohort is never
// fetched twice.
type MiniprogramJob struct {
	Client   RetainFetcher
	AppID    string
	Kinds    []wechat.Kind
	Location *time.Location
	Target   *state.Target
	Logger   *slog.Logger

	cohorts [3]map[calendar.Date]wechat.Retain
	blocked [3]*apicall.Error // the daily-quota answer stopping calls to that API until its RetryAfter
	fetched int               // answers with data in the current refresh
}

// Refresh brings every enabled kind up to date, publishes what it has,
// and returns the first error after trying every kind.
func (j *MiniprogramJob) Refresh(ctx context.Context) (scheduler.Outcome, error) {
	now := time.Now()
	out := scheduler.Outcome{Current: true}
	var firstErr error
	j.fetched = 0
	for _, k := range j.Kinds {
		// New data of a kind cannot appear before 08:00 after its period ends.
		if next := k.Period().NextBoundary(now, j.Location).Add(wechat.PublishNotBefore); out.NextData.IsZero() || next.Before(out.NextData) {
			out.NextData = next
		}
		if j.isBlocked(k, now) {
			// Still a failure: the kind cannot be refreshed today.
			out.Current = false
			if firstErr == nil {
				firstErr = withoutRetryAfter(j.blocked[k])
			}
			continue
		}
		if notBefore := j.notBefore(k, now); now.Before(notBefore) && j.hasAll(k, now) {
			// The previous period is complete and the new one cannot be
			// published yet: no call.
			out.Current = false
			if out.NotBefore.IsZero() || notBefore.Before(out.NotBefore) {
				out.NotBefore = notBefore
			}
			continue
		}
		current, err := j.refreshKind(ctx, k, now)
		if err != nil {
			out.Current = false
			if e, ok := apicall.AsError(err); ok && e.Reason == apicall.ReasonQuota && !e.RetryAfter.IsZero() && e.RetryAfter.Sub(now) > time.Hour {
				// 45009 stops this API only: the other kinds go on.
				j.blocked[k] = e
				err = withoutRetryAfter(e)
			}
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				break
			}
			continue
		}
		out.Current = out.Current && current
	}
	if until, all := j.allBlocked(now); all {
		// Nothing can be called before the quota resets: sleep till then.
		cp := *j.blocked[j.Kinds[0]]
		cp.RetryAfter = until
		firstErr = &cp
	}
	j.publish()
	if j.fetched > 0 {
		j.Logger.Info("refreshed", "cohorts_fetched", j.fetched, "current", out.Current)
	}
	return out, firstErr
}

func (j *MiniprogramJob) isBlocked(k wechat.Kind, now time.Time) bool {
	return j.blocked[k] != nil && now.Before(j.blocked[k].RetryAfter)
}

// withoutRetryAfter is e for the scheduler when only one API is blocked:
// it backs off as usual, the job itself skips the blocked API.
func withoutRetryAfter(e *apicall.Error) *apicall.Error {
	cp := *e
	cp.RetryAfter = time.Time{}
	return &cp
}

// allBlocked reports whether every enabled kind is blocked at now, and
// until when the first of them is.
func (j *MiniprogramJob) allBlocked(now time.Time) (time.Time, bool) {
	var until time.Time
	for _, k := range j.Kinds {
		if !j.isBlocked(k, now) {
			return time.Time{}, false
		}
		if until.IsZero() || j.blocked[k].RetryAfter.Before(until) {
			until = j.blocked[k].RetryAfter
		}
	}
	return until, len(j.Kinds) > 0
}

// notBefore is when the newest complete period of k can first be published.
func (j *MiniprogramJob) notBefore(k wechat.Kind, now time.Time) time.Time {
	p := k.Period()
	return p.Add(p.LatestComplete(now, j.Location), 1).Start(j.Location).Add(wechat.PublishNotBefore)
}

// hasAll reports whether every key of k is served from its own cohort as
// of the period before the newest complete one: all there is until the
// newest is published.
func (j *MiniprogramJob) hasAll(k wechat.Kind, now time.Time) bool {
	p := k.Period()
	prev := p.Add(p.LatestComplete(now, j.Location), -1)
	for _, key := range k.Keys() {
		if c, ok := j.cohorts[k][p.Add(prev, -key)]; !ok || !c.Has(key) {
			return false
		}
	}
	return true
}

func (j *MiniprogramJob) fetch(ctx context.Context, k wechat.Kind, start calendar.Date) (wechat.Retain, error) {
	if j.cohorts[k] == nil {
		j.cohorts[k] = map[calendar.Date]wechat.Retain{}
	}
	r, err := j.Client.Retain(ctx, k, start)
	if err != nil {
		return r, err
	}
	if !r.Empty() {
		j.cohorts[k][start] = r
		j.fetched++
	}
	return r, nil
}

// refreshKind fetches what kind k lacks and reports whether every key now
// comes from its own cohort P_k.
func (j *MiniprogramJob) refreshKind(ctx context.Context, k wechat.Kind, now time.Time) (bool, error) {
	p := k.Period()
	latest := p.LatestComplete(now, j.Location)
	keys := k.Keys()
	current := true
	// Fresh keys, ascending. They are published together when a period
	// ends, so the first one missing means "not yet": stop there.
	for _, key := range keys {
		start := p.Add(latest, -key)
		if c, ok := j.cohorts[k][start]; ok && c.Has(key) {
			continue
		}
		r, err := j.fetch(ctx, k, start)
		if err != nil {
			return false, err
		}
		if !r.Has(key) {
			j.Logger.Debug("retain key not published yet", "retain", k, "cohort", start, "key", key)
			current = false
			break
		}
	}
	// Fallbacks: a key whose own cohort lacks it comes from the cohort
	// before, which has matured past it (needed after a start, or when the
	// walk above stopped early).
	for _, key := range keys {
		start := p.Add(latest, -key)
		if hasKeyAtOrBefore(j.cohorts[k], key, start) {
			continue
		}
		if _, err := j.fetch(ctx, k, p.Add(start, -1)); err != nil {
			return false, err
		}
	}
	// Forget cohorts no key can come from any more.
	oldest := p.Add(latest, -keys[len(keys)-1]-1)
	for start := range j.cohorts[k] {
		if start.Before(oldest) {
			delete(j.cohorts[k], start)
		}
	}
	return current, nil
}

// publish builds the snapshot from the kept cohorts.
func (j *MiniprogramJob) publish() {
	snap := &state.Miniprogram{AppID: j.AppID}
	if old := j.Target.Snapshot(); old != nil && old.Miniprogram != nil {
		snap.Retain = old.Miniprogram.Retain
	}
	for _, k := range j.Kinds {
		keys := RetainKeys(k, j.cohorts[k], j.Location)
		if keys == nil {
			continue // nothing fetched yet: keep what was served
		}
		snap.Retain[k] = keys
	}
	j.Target.Publish(&state.Snapshot{Miniprogram: snap})
}

// hasKeyAtOrBefore reports whether a cohort starting at or before from has key.
func hasKeyAtOrBefore(cohorts map[calendar.Date]wechat.Retain, key int, from calendar.Date) bool {
	for start, r := range cohorts {
		if !start.After(from) && r.Has(key) {
			return true
		}
	}
	return false
}

// RetainKeys is what a mini-program serves for kind k given the cohorts it
// holds: each key from the newest cohort that has it. It is nil when no
// cohort is held.
func RetainKeys(k wechat.Kind, cohorts map[calendar.Date]wechat.Retain, loc *time.Location) []state.RetainKey {
	var newest calendar.Date
	for start := range cohorts {
		if start.After(newest) {
			newest = start
		}
	}
	if newest.IsZero() {
		return nil
	}
	keys := []state.RetainKey{}
	for _, key := range k.Keys() {
		var best calendar.Date
		for start, r := range cohorts {
			if r.Has(key) && start.After(best) {
				best = start
			}
		}
		if best.IsZero() {
			continue
		}
		r := cohorts[best]
		rk := state.RetainKey{Key: key, CohortStart: best.Start(loc)}
		rk.New, rk.NewRatio = valueAndRatio(r.New, key)
		rk.Active, rk.ActiveRatio = valueAndRatio(r.Active, key)
		keys = append(keys, rk)
	}
	return keys
}

func valueAndRatio(m map[int]float64, key int) (state.Value, state.Value) {
	v, ok := m[key]
	if !ok {
		return state.Value{}, state.Value{}
	}
	val := state.Value{V: v, Valid: true}
	if base, ok := m[0]; key > 0 && ok && base > 0 {
		return val, state.Value{V: v / base, Valid: true}
	}
	return val, state.Value{}
}
