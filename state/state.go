// Package state holds what each target knows at run time: the last good
// snapshot of its data, swapped atomically, and the counters and times that
// describe its refreshes. Refresh jobs write it; the collector and the
// status page read it.
package state

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

// Source names, the values of the source label.
const (
	SourceWshoto      = "wshoto"
	SourceMiniprogram = "wechat_miniprogram"
)

// Snapshot is the immutable data a target serves. Exactly one field is set.
type Snapshot struct {
	Wshoto      *Wshoto
	Miniprogram *Miniprogram
}

// Miniprogram is the retention a mini-program serves, per retain kind
// (indexed by wechat.Kind; nil for kinds not enabled or not yet fetched).
type Miniprogram struct {
	AppID  string
	Retain [3][]RetainKey
}

// RetainKey is one key of a retain kind, from the newest cohort that has it.
type RetainKey struct {
	Key         int
	CohortStart time.Time // 00:00 of the cohort period's first day
	// New and Active users (visit_uv_new, visit_uv), and their ratio to
	// key 0 of the same cohort (never for key 0).
	New, Active           Value
	NewRatio, ActiveRatio Value
}

// Value is a number that may be absent.
type Value struct {
	V     float64
	Valid bool
}

// Wshoto is one data day of a wshoto corp.
type Wshoto struct {
	// TagIDs are the configured tags the records were asked for.
	TagIDs    []string
	Date      calendar.Date
	DateStart time.Time       // 00:00 of Date in the configured time zone
	Records   []wshoto.Record // one per tag, sorted by tag id
}

// LatencyBuckets are the upper bounds of the upstream request histogram.
var LatencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Target is the run-time state of one configured target. It implements
// apicall.Observer.
type Target struct {
	Source string
	Name   string

	snap atomic.Pointer[Snapshot]

	mu          sync.Mutex
	attempted   bool
	lastAttempt time.Time
	lastOK      bool
	lastSuccess time.Time
	lastError   string
	nextCall    time.Time
	errors      map[string]float64
	requests    map[RequestKey]float64
	latency     map[string]*histogram
	tokens      map[string]float64
	callsDay    calendar.Date
	callsToday  int
	loc         *time.Location
}

// RequestKey labels an upstream request counter.
type RequestKey struct{ Endpoint, Code string }

func newHistogram() *histogram {
	return &histogram{buckets: make([]uint64, len(LatencyBuckets))}
}

type histogram struct {
	count   uint64
	sum     float64
	buckets []uint64 // per bound, not cumulative
}

// NewTarget returns the state of a target with its counters at zero.
// loc is the time zone that "calls today" is counted in.
func NewTarget(source, name string, loc *time.Location) *Target {
	t := &Target{
		Source: source, Name: name, loc: loc,
		errors:   map[string]float64{},
		requests: map[RequestKey]float64{},
		latency:  map[string]*histogram{},
		tokens:   map[string]float64{"success": 0, "failure": 0},
	}
	for _, r := range apicall.Reasons {
		t.errors[r] = 0
	}
	return t
}

// InitEndpoints starts the request counter (code "0") and the latency
// histogram of each endpoint at zero, so that rates and alerts have series
// before the first call.
func (t *Target) InitEndpoints(endpoints ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ep := range endpoints {
		k := RequestKey{ep, apicall.CodeOK}
		if _, ok := t.requests[k]; !ok {
			t.requests[k] = 0
		}
		if t.latency[ep] == nil {
			t.latency[ep] = newHistogram()
		}
	}
}

// Snapshot returns the data served now, nil before the first success.
func (t *Target) Snapshot() *Snapshot { return t.snap.Load() }

// Publish replaces the data served.
func (t *Target) Publish(s *Snapshot) { t.snap.Store(s) }

// SetLocation changes the zone "calls today" is counted in (on reload).
func (t *Target) SetLocation(loc *time.Location) {
	t.mu.Lock()
	t.loc = loc
	t.mu.Unlock()
}

// ObserveRequest counts one upstream HTTP call.
func (t *Target) ObserveRequest(endpoint, code string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.requests[RequestKey{endpoint, code}]++
	h := t.latency[endpoint]
	if h == nil {
		h = newHistogram()
		t.latency[endpoint] = h
	}
	s := d.Seconds()
	h.count++
	h.sum += s
	if i, _ := slices.BinarySearch(LatencyBuckets, s); i < len(h.buckets) {
		h.buckets[i]++
	}
	today := calendar.DateOf(time.Now(), t.location())
	if today != t.callsDay {
		t.callsDay, t.callsToday = today, 0
	}
	t.callsToday++
}

func (t *Target) location() *time.Location {
	if t.loc == nil {
		return time.UTC
	}
	return t.loc
}

// ObserveTokenRefresh counts one access-token fetch.
func (t *Target) ObserveTokenRefresh(ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		t.tokens["success"]++
	} else {
		t.tokens["failure"]++
	}
}

// RecordSuccess notes a refresh attempt that succeeded at now.
func (t *Target) RecordSuccess(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attempted, t.lastAttempt, t.lastOK, t.lastSuccess, t.lastError = true, now, true, now, ""
}

// RecordFailure notes a refresh attempt that failed at now; msg must be
// redacted already.
func (t *Target) RecordFailure(now time.Time, reason, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attempted, t.lastAttempt, t.lastOK, t.lastError = true, now, false, msg
	t.errors[reason]++
}

// SetNextCall notes when the scheduler plans the next refresh.
func (t *Target) SetNextCall(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextCall = at
}

// Attempted reports whether a first refresh attempt has finished.
func (t *Target) Attempted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.attempted
}

// Histogram is a copy of a latency histogram, buckets cumulative.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// Stats is a consistent copy of a target's counters and times.
type Stats struct {
	Attempted   bool
	LastAttempt time.Time
	LastOK      bool
	LastSuccess time.Time // zero before the first success
	LastError   string
	NextCall    time.Time
	CallsToday  int
	Errors      map[string]float64
	Requests    map[RequestKey]float64
	Latency     map[string]Histogram
	Tokens      map[string]float64
}

// Stats returns a copy of the counters.
func (t *Target) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Attempted: t.attempted, LastAttempt: t.lastAttempt, LastOK: t.lastOK,
		LastSuccess: t.lastSuccess, LastError: t.lastError, NextCall: t.nextCall,
		Errors: maps.Clone(t.errors), Requests: maps.Clone(t.requests), Tokens: maps.Clone(t.tokens),
		Latency: make(map[string]Histogram, len(t.latency)),
	}
	if t.callsDay == calendar.DateOf(time.Now(), t.location()) {
		s.CallsToday = t.callsToday
	}
	for ep, h := range t.latency {
		cum := make(map[float64]uint64, len(LatencyBuckets))
		var n uint64
		for i, b := range LatencyBuckets {
			n += h.buckets[i]
			cum[b] = n
		}
		s.Latency[ep] = Histogram{Count: h.count, Sum: h.sum, Buckets: cum}
	}
	return s
}

// Set is the collection of live targets, replaced as a whole on reload.
type Set struct {
	targets atomic.Pointer[[]*Target]
}

// Replace makes ts the live targets.
func (s *Set) Replace(ts []*Target) {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b *Target) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Name, b.Name))
	})
	s.targets.Store(&ts)
}

// Targets returns the live targets sorted by source and name.
func (s *Set) Targets() []*Target {
	if p := s.targets.Load(); p != nil {
		return *p
	}
	return nil
}

// Get returns the live target of source and name, or nil.
func (s *Set) Get(source, name string) *Target {
	for _, t := range s.Targets() {
		if t.Source == source && t.Name == name {
			return t
		}
	}
	return nil
}

// Ready reports whether every live target has finished a refresh attempt.
func (s *Set) Ready() bool {
	for _, t := range s.Targets() {
		if !t.Attempted() {
			return false
		}
	}
	return s.targets.Load() != nil
}
