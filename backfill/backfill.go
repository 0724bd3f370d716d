// Package backfill writes the history the upstreams keep as OpenMetrics
// text with timestamps, for promtool tsdb create-blocks-from openmetrics.
//
// Each sample is stamped with the moment a live exporter could first have
// shown it, 00:00 (in the configured time zone) of the day after its period
// ends, and carries the values a live scrape showed from then on: the
// snapshots are built as the live jobs build them and rendered by the live
// collector, so names, labels and values agree with /metrics.
package backfill

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/collector"
	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

// Options say what to backfill.
type Options struct {
	Config     *config.Config
	Start, End calendar.Date
	Source     string // state.SourceWshoto, state.SourceMiniprogram, or "" for both
	// ConfigFile names the file in the resume command of a failure.
	ConfigFile string
	// Now is the current time (the range must end before today).
	Now time.Time
	// Progress receives progress and the final report; Terminal draws a
	// bar instead of lines.
	Progress io.Writer
	Terminal bool
	// Deps builds the clients (tests replace the HTTP client).
	Deps source.Deps
	// Sleep waits between retries; nil sleeps for real.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Stamp is the moment a live exporter could first serve the period of
// kind p starting at start: 00:00 in loc of the day after the period ends.
func Stamp(p calendar.Period, start calendar.Date, loc *time.Location) time.Time {
	return p.Add(start, 1).Start(loc)
}

// Periods returns the starts of the periods of kind p whose last day lies
// in [from, to], oldest first.
func Periods(p calendar.Period, from, to calendar.Date) []calendar.Date {
	var out []calendar.Date
	// The period containing from ends on or after from.
	for s := p.Start(from); !p.End(s).After(to); s = p.Add(s, 1) {
		out = append(out, s)
	}
	return out
}

// CheckRange refuses ranges that are reversed or reach today: the
// upstreams publish T+1, so today's data does not exist yet.
func CheckRange(from, to calendar.Date, now time.Time, loc *time.Location) error {
	if to.Before(from) {
		return fmt.Errorf("--start %s is after --end %s", from, to)
	}
	today := calendar.DateOf(now, loc)
	if !to.Before(today) {
		return fmt.Errorf("--end %s is today or later in %s: the upstreams publish T+1, so the newest day to backfill is %s", to, loc, today.AddDays(-1))
	}
	return nil
}

// Failure is a part of the range that could not be fetched.
type Failure struct {
	What   string // "wshoto acme", "wechat_miniprogram shop weekly"
	From   calendar.Date
	Err    error
	Resume string // the command line that fetches the rest
}

// Report says what a run wrote and what failed.
type Report struct {
	Samples  int
	Calls    int
	Written  []string // one line per target and kind
	Failures []Failure
}

// Run fetches the range and writes it to out. Parts that fail are
// reported and left out; everything fetched before is still written.
func Run(ctx context.Context, o Options, out io.Writer) (*Report, error) {
	loc := o.Config.Global.Location
	if err := CheckRange(o.Start, o.End, o.Now, loc); err != nil {
		return nil, err
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	r := &runner{o: o, loc: loc, series: newSeries(), report: &Report{}}
	r.plan()
	r.progress = newProgress(o.Progress, o.Terminal, r.total)
	for _, job := range r.jobs {
		job(ctx)
		if ctx.Err() != nil {
			return r.report, ctx.Err()
		}
	}
	r.progress.finish()
	r.report.Samples = r.series.count()
	return r.report, r.series.writeTo(out)
}

type runner struct {
	o        Options
	loc      *time.Location
	series   *series
	report   *Report
	jobs     []func(context.Context)
	total    int
	progress *progress
	calls    counter
}

// counter counts upstream calls; it is every client's observer.
type counter struct{ n *int }

func (c counter) ObserveRequest(string, string, time.Duration) { *c.n++ }
func (c counter) ObserveTokenRefresh(bool)                     {}

func (r *runner) plan() {
	r.calls = counter{&r.report.Calls}
	cfg := r.o.Config
	if r.o.Source == "" || r.o.Source == state.SourceWshoto {
		for _, tc := range cfg.Wshoto {
			windows := calendar.Windows(r.o.Start, r.o.End, wshoto.WindowMonths)
			r.total += len(windows)
			r.jobs = append(r.jobs, func(ctx context.Context) { r.wshoto(ctx, tc, windows) })
		}
	}
	if r.o.Source == "" || r.o.Source == state.SourceMiniprogram {
		for _, tc := range cfg.WechatMiniprogram {
			kinds := source.Kinds(tc)
			cohorts := make([][]calendar.Date, len(kinds))
			for i, k := range kinds {
				cohorts[i] = neededCohorts(k, Periods(k.Period(), r.o.Start, r.o.End))
				r.total += len(cohorts[i])
			}
			r.jobs = append(r.jobs, func(ctx context.Context) {
				// One client for every kind: one token cache.
				client, err := r.o.Deps.MiniprogramClient(tc, r.loc, r.calls)
				if err != nil {
					r.fail(state.SourceMiniprogram+" "+tc.Name, r.o.Start, err, state.SourceMiniprogram)
					return
				}
				for i, k := range kinds {
					r.miniprogram(ctx, client, tc, k, cohorts[i])
				}
			})
		}
	}
}

// neededCohorts are the cohorts whose keys the periods' stamps show, oldest
// first: for period W, W-k for every key k.
func neededCohorts(k wechat.Kind, periods []calendar.Date) []calendar.Date {
	p := k.Period()
	seen := map[calendar.Date]bool{}
	var out []calendar.Date
	for _, w := range periods {
		for _, key := range k.Keys() {
			if c := p.Add(w, -key); !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, calendar.Date.Compare)
	return out
}

// emitter renders snapshots of one target with the live collector.
type emitter struct {
	target   *state.Target
	registry *prometheus.Registry
}

func newEmitter(src, name string, loc *time.Location) *emitter {
	t := state.NewTarget(src, name, loc)
	set := &state.Set{}
	set.Replace([]*state.Target{t})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.New(set))
	return &emitter{target: t, registry: reg}
}

func (e *emitter) emit(s *series, snap *state.Snapshot, at time.Time) error {
	e.target.Publish(snap)
	families, err := e.registry.Gather()
	if err != nil {
		return err
	}
	// Only the data: the exporter's own metrics describe a live process.
	families = slices.DeleteFunc(families, func(f *dto.MetricFamily) bool {
		return strings.HasPrefix(f.GetName(), "wechat_retention_exporter_")
	})
	s.add(families, at)
	return nil
}

func (r *runner) wshoto(ctx context.Context, tc *config.WshotoTarget, windows [][2]calendar.Date) {
	what := state.SourceWshoto + " " + tc.Name
	client, err := r.o.Deps.WshotoClient(tc, r.calls)
	if err != nil {
		r.fail(what, r.o.Start, err, state.SourceWshoto)
		return
	}
	em := newEmitter(state.SourceWshoto, tc.Name, r.loc)
	days, empty := 0, 0
	for i, w := range windows {
		var recs []wshoto.Record
		err := r.retry(ctx, func() error {
			var err error
			recs, err = client.TagStats(ctx, tc.TagIDs, w[0], w[1])
			return err
		})
		if err != nil {
			r.fail(what, w[0], err, state.SourceWshoto)
			r.progress.skip(len(windows) - i)
			break
		}
		byDay := map[calendar.Date][]wshoto.Record{}
		for _, rec := range recs {
			byDay[rec.Date] = append(byDay[rec.Date], rec)
		}
		for d := w[0]; !d.After(w[1]); d = d.AddDays(1) {
			day := byDay[d]
			if len(day) == 0 {
				empty++ // not published (yet), or no data: a live exporter kept the day before
				continue
			}
			slices.SortFunc(day, func(a, b wshoto.Record) int { return strings.Compare(a.TagID, b.TagID) })
			snap := &state.Snapshot{Wshoto: &state.Wshoto{TagIDs: tc.TagIDs, Date: d, DateStart: d.Start(r.loc), Records: day}}
			if err := em.emit(r.series, snap, Stamp(calendar.Day, d, r.loc)); err != nil {
				r.fail(what, d, err, state.SourceWshoto)
				return
			}
			days++
		}
		r.progress.step(what + " " + w[0].String() + ".." + w[1].String())
	}
	line := fmt.Sprintf("%s: %d data days written", what, days)
	if empty > 0 {
		line += fmt.Sprintf(", %d days without records", empty)
	}
	r.report.Written = append(r.report.Written, line)
}

func (r *runner) miniprogram(ctx context.Context, client *wechat.Client, tc *config.MiniprogramTarget, k wechat.Kind, cohorts []calendar.Date) {
	what := fmt.Sprintf("%s %s %s", state.SourceMiniprogram, tc.Name, k)
	p := k.Period()
	got := map[calendar.Date]wechat.Retain{}
	var failedAt *calendar.Date
	for i, c := range cohorts {
		var ans wechat.Retain
		err := r.retry(ctx, func() error {
			var err error
			ans, err = client.Retain(ctx, k, c)
			return err
		})
		if err != nil {
			r.fail(what, p.End(c), err, state.SourceMiniprogram)
			r.progress.skip(len(cohorts) - i)
			failedAt = &c
			break
		}
		got[c] = ans
		r.progress.step(what + " " + c.String())
	}
	em := newEmitter(state.SourceMiniprogram, tc.Name, r.loc)
	keys := k.Keys()
	maxKey := keys[len(keys)-1]
	periods, unpublished := 0, 0
	for _, w := range Periods(p, r.o.Start, r.o.End) {
		if failedAt != nil && !w.Before(*failedAt) {
			break
		}
		if !got[w].Has(0) {
			unpublished++ // a live exporter kept serving the period before
			continue
		}
		// What a live exporter held at the stamp: of cohort W-j, only the
		// keys published by then (k <= j).
		held := map[calendar.Date]wechat.Retain{}
		for j := 0; j <= maxKey+1; j++ {
			c := p.Add(w, -j)
			if ans, ok := got[c]; ok {
				held[c] = visibleKeys(ans, j)
			}
		}
		snap := &state.Miniprogram{AppID: tc.AppID}
		snap.Retain[k] = source.RetainKeys(k, held, r.loc)
		if err := em.emit(r.series, &state.Snapshot{Miniprogram: snap}, Stamp(p, w, r.loc)); err != nil {
			r.fail(what, w, err, state.SourceMiniprogram)
			return
		}
		periods++
	}
	line := fmt.Sprintf("%s: %d periods written", what, periods)
	if unpublished > 0 {
		line += fmt.Sprintf(", %d not published", unpublished)
	}
	r.report.Written = append(r.report.Written, line)
}

// visibleKeys keeps the keys of a cohort answer that were published j
// periods after the cohort.
func visibleKeys(r wechat.Retain, j int) wechat.Retain {
	keep := func(m map[int]float64) map[int]float64 {
		out := map[int]float64{}
		for key, v := range m {
			if key <= j {
				out[key] = v
			}
		}
		return out
	}
	return wechat.Retain{RefDate: r.RefDate, New: keep(r.New), Active: keep(r.Active)}
}

func (r *runner) fail(what string, from calendar.Date, err error, src string) {
	file := cmp.Or(r.o.ConfigFile, "FILE")
	resume := fmt.Sprintf("wechat_retention_exporter backfill --config.file=%s --source=%s --start=%s --end=%s --output=rest.om", file, src, from, r.o.End)
	r.report.Failures = append(r.report.Failures, Failure{What: what, From: from, Err: err, Resume: resume})
}

// Retries of one call: transient failures back off 1 s, 2 s, 4 s, 8 s;
// failures that retrying cannot fix (configuration, daily quota) end it.
const attempts = 5

func (r *runner) retry(ctx context.Context, call func() error) error {
	wait := time.Second
	for i := 1; ; i++ {
		err := call()
		if err == nil || i == attempts || ctx.Err() != nil {
			return err
		}
		e, ok := apicall.AsError(err)
		if !ok || e.Reason == apicall.ReasonConfig {
			return err
		}
		d := wait
		if !e.RetryAfter.IsZero() {
			ra := time.Until(e.RetryAfter)
			if ra > 2*time.Minute {
				return err // the daily quota: nothing to do until tomorrow
			}
			d = max(d, ra)
		}
		if err := r.o.Sleep(ctx, d); err != nil {
			return err
		}
		wait *= 2
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Summary renders the report for people.
func (rep *Report) Summary() string {
	var b strings.Builder
	for _, l := range rep.Written {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "%d samples written, %d upstream calls\n", rep.Samples, rep.Calls)
	for _, f := range rep.Failures {
		fmt.Fprintf(&b, "FAILED %s from %s: %v\n  everything before %s was written; to fetch the rest run:\n  %s\n", f.What, f.From, f.Err, f.From, f.Resume)
	}
	return b.String()
}
