package source_test

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/collector"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

var update = flag.Bool("update", false, "rewrite golden files")

var shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

const (
	appID  = "wsappid"
	secret = "s3cr3t-app-secret"
)

type rig struct {
	fake   *wshototest.Server
	target *state.Target
	set    *state.Set
	reg    *prometheus.Registry
	job    *source.WshotoJob
	logs   *bytes.Buffer
}

func newRig(t *testing.T, tags []wshototest.Tag) *rig {
	t.Helper()
	f := wshototest.New(appID, secret)
	if tags != nil {
		f.Tags = tags
	}
	var ids []string
	for _, tg := range f.Tags {
		ids = append(ids, tg.ID)
	}
	r := &rig{fake: f, set: &state.Set{}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	r.target = state.NewTarget(state.SourceWshoto, "acme", shanghai)
	r.set.Replace([]*state.Target{r.target})
	client, err := wshoto.New(wshoto.Options{BaseURL: "https://open.wshoto.test", AppID: appID, AppSecret: secret,
		HTTP: upstreamtest.Client(f), RateLimit: 100, Observer: r.target})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.job = &source.WshotoJob{Client: client, TagIDs: ids, Location: shanghai, LookbackDays: 7, Target: r.target, Logger: logger}
	r.reg.MustRegister(collector.New(r.set))
	return r
}

func (r *rig) analyzeCalls() []wshototest.Call {
	var out []wshototest.Call
	for _, c := range r.fake.Calls() {
		if c.Path == wshoto.AnalyzePath {
			out = append(out, c)
		}
	}
	return out
}

func (r *rig) run(ctx context.Context) {
	p := scheduler.DefaultPolicy(15 * time.Minute)
	p.Rand = func() float64 { return 0 } // poll every 12m45s, back off by half steps, no spread
	scheduler.Run(ctx, r.job, p, r.target, slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// bubbleStart is where synctest's clock starts: 2000-01-01 00:00 UTC,
// 08:00 in Shanghai.
func shTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, shanghai)
	if err != nil {
		panic(err)
	}
	return t
}

func TestGoldenExposition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := testutil.CollectAndFormat(collector.New(r.set), expfmt.TypeTextPlain,
			"wshoto_group_customers", "wshoto_group_distinct_customers", "wshoto_group_joined_customers",
			"wshoto_group_distinct_joined_customers", "wshoto_group_left_customers", "wshoto_group_distinct_left_customers",
			"wshoto_group_customer_retention_ratio", "wshoto_group_stats_date_timestamp_seconds",
			"wechat_retention_exporter_refresh_errors_total", "wechat_retention_exporter_upstream_requests_total",
			"wechat_retention_exporter_token_refreshes_total")
		if err != nil {
			t.Fatal(err)
		}
		const golden = "testdata/wshoto.golden.prom"
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("exposition differs from %s (run with -update after checking):\n%s", golden, got)
		}
		// The data day is yesterday in Shanghai, 1999-12-31, as its midnight.
		if !strings.Contains(string(got), "wshoto_group_stats_date_timestamp_seconds{corp=\"acme\"} 9.465696e+08\n") {
			t.Errorf("date gauge is not 1999-12-31 00:00 +08:00 (946569600)")
		}
	})
}

func TestGoldenPassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is required (Debian package prometheus): ", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin, _ = os.Open("testdata/wshoto.golden.prom")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestScrapesNeverCallUpstream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		before := len(r.fake.Calls())
		for range 50 {
			if _, err := r.reg.Gather(); err != nil {
				t.Fatal(err)
			}
		}
		if after := len(r.fake.Calls()); after != before {
			t.Errorf("50 scrapes made %d upstream calls", after-before)
		}
	})
}

// Across Shanghai midnight: no call while yesterday is held; from midnight
// a poll every 12 minutes until the 02:00 publication; then quiet again.
func TestScheduleAcrossMidnight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.fake.PublishDelay = 2 * time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go r.run(ctx)
		synctest.Wait()
		if n := len(r.analyzeCalls()); n != 1 {
			t.Fatalf("first refresh: %d analysis calls, want 1", n)
		}
		if d := r.target.Snapshot().Wshoto.Date; d != (calendar.Date{Year: 1999, Month: 12, Day: 31}) {
			t.Fatalf("data day %v", d)
		}

		time.Sleep(time.Until(shTime("2000-01-01 23:59")))
		synctest.Wait()
		if n := len(r.analyzeCalls()); n != 1 {
			t.Fatalf("calls before midnight = %d, want 1: the data was current", n)
		}

		time.Sleep(time.Until(shTime("2000-01-02 03:00")))
		synctest.Wait()
		calls := r.analyzeCalls()[1:]
		var at []string
		for _, c := range calls {
			at = append(at, c.At.In(shanghai).Format("15:04"))
		}
		// Every 12m45s (85 % of poll_interval with Rand 0) until 02:00.
		want := "00:00 00:12 00:25 00:38 00:51 01:03 01:16 01:29 01:42 01:54 02:07"
		if strings.Join(at, " ") != want {
			t.Errorf("calls after midnight at %v, want %s", at, want)
		}
		if d := r.target.Snapshot().Wshoto.Date; d != (calendar.Date{Year: 2000, Month: 1, Day: 1}) {
			t.Errorf("after publication data day = %v", d)
		}
		// Until publication the previous day was served, never zeros.
		for _, c := range calls[:len(calls)-1] {
			if !strings.Contains(c.Body, `"start_date":"2000-01-01"`) {
				t.Errorf("polled for the wrong day: %s", c.Body)
			}
		}
		if !strings.Contains(r.logs.String(), "data day not published yet") {
			t.Error("no debug line for an unpublished day")
		}

		time.Sleep(time.Until(shTime("2000-01-02 23:59")))
		synctest.Wait()
		if n := len(r.analyzeCalls()); n != 1+len(calls) {
			t.Errorf("calls during a current day: %d", n-1-len(calls))
		}
	})
}

// Failures back off (15 s, 30 s, 60 s, … with Rand 0), keep the last good
// values, count the reason, and recover when the fault clears.
func TestBackoffKeepsLastGoodValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		good := r.target.Snapshot()
		time.Sleep(time.Until(shTime("2000-01-02 00:30"))) // a new day is due
		// 500s: the client does not retry them itself (it does 502-504).
		r.fake.Inject(wshoto.AnalyzePath, wshototest.Fault{Status: 500}, wshototest.Fault{Status: 500},
			wshototest.Fault{Status: 500}, wshototest.Fault{Status: 500})
		r.fake.ResetCalls()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go r.run(ctx)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		calls := r.analyzeCalls()
		var gaps []string
		for i := 1; i < len(calls); i++ {
			gaps = append(gaps, calls[i].At.Sub(calls[i-1].At).String())
		}
		if got, want := strings.Join(gaps, " "), "15s 30s 1m0s 2m0s"; got != want {
			t.Errorf("waits between calls %q, want %q", got, want)
		}
		if len(calls) != 5 || calls[4].Answer != 0 {
			t.Fatalf("calls: %+v", calls)
		}
		if r.target.Snapshot() == good || r.target.Snapshot().Wshoto.Date != (calendar.Date{Year: 2000, Month: 1, Day: 1}) {
			t.Error("did not recover to the new day")
		}
		want := `
# HELP wechat_retention_exporter_refresh_errors_total Failed refreshes of the target by cause.
# TYPE wechat_retention_exporter_refresh_errors_total counter
wechat_retention_exporter_refresh_errors_total{reason="api_error",source="wshoto",target="acme"} 0
wechat_retention_exporter_refresh_errors_total{reason="config",source="wshoto",target="acme"} 0
wechat_retention_exporter_refresh_errors_total{reason="http_status",source="wshoto",target="acme"} 4
wechat_retention_exporter_refresh_errors_total{reason="invalid_response",source="wshoto",target="acme"} 0
wechat_retention_exporter_refresh_errors_total{reason="network",source="wshoto",target="acme"} 0
wechat_retention_exporter_refresh_errors_total{reason="quota",source="wshoto",target="acme"} 0
wechat_retention_exporter_refresh_errors_total{reason="timeout",source="wshoto",target="acme"} 0
wechat_retention_exporter_refresh_errors_total{reason="token",source="wshoto",target="acme"} 0
# HELP wechat_retention_exporter_last_refresh_success 1 if the target's last refresh succeeded, 0 if it failed.
# TYPE wechat_retention_exporter_last_refresh_success gauge
wechat_retention_exporter_last_refresh_success{source="wshoto",target="acme"} 1
`
		if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "wechat_retention_exporter_refresh_errors_total", "wechat_retention_exporter_last_refresh_success"); err != nil {
			t.Error(err)
		}
	})
}

// While a refresh fails, /metrics still serves the last good values and
// says the refresh failed.
func TestFailureKeepsServingLastGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		before, _ := testutil.CollectAndFormat(collector.New(r.set), expfmt.TypeTextPlain, "wshoto_group_customers")
		time.Sleep(time.Until(shTime("2000-01-02 09:00")))
		r.fake.Inject(wshoto.AnalyzePath, wshototest.Fault{Body: "<html>502 Bad Gateway</html>"})
		ctx, cancel := context.WithCancel(context.Background())
		go r.run(ctx)
		synctest.Wait()
		cancel()
		after, _ := testutil.CollectAndFormat(collector.New(r.set), expfmt.TypeTextPlain, "wshoto_group_customers")
		if !bytes.Equal(before, after) || len(before) == 0 {
			t.Errorf("values changed after a failed refresh:\n%s\n%s", before, after)
		}
		failed := `
# HELP wechat_retention_exporter_last_refresh_success 1 if the target's last refresh succeeded, 0 if it failed.
# TYPE wechat_retention_exporter_last_refresh_success gauge
wechat_retention_exporter_last_refresh_success{source="wshoto",target="acme"} 0
`
		if err := testutil.GatherAndCompare(r.reg, strings.NewReader(failed), "wechat_retention_exporter_last_refresh_success"); err != nil {
			t.Error(err)
		}
	})
}

// A tag that vanishes upstream vanishes at the next good refresh; a tag
// with no records is absent rather than zero.
func TestVanishedTagVanishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := testutil.CollectAndCount(collector.New(r.set), "wshoto_group_customers"); n != 5 {
			t.Fatalf("%d series, want 5", n)
		}
		r.fake.Tags = r.fake.Tags[:3]
		time.Sleep(time.Until(shTime("2000-01-02 09:00")))
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := testutil.CollectAndCount(collector.New(r.set), "wshoto_group_customers"); n != 3 {
			t.Errorf("%d series after two tags vanished, want 3", n)
		}
	})
}

// With nothing published for days, the first refresh walks back to the
// newest published day within lookback_days.
func TestFirstRefreshFindsNewestPublishedDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.fake.Withhold(calendar.Date{Year: 1999, Month: 12, Day: 28})
		out, err := r.job.Refresh(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if out.Current || r.target.Snapshot().Wshoto.Date != (calendar.Date{Year: 1999, Month: 12, Day: 28}) {
			t.Errorf("outcome %+v, day %v", out, r.target.Snapshot().Wshoto.Date)
		}
		if n := len(r.analyzeCalls()); n != 4 {
			t.Errorf("%d calls, want 4 (31st, 30th, 29th, 28th)", n)
		}
		// The next poll asks only for the days newer than the 28th.
		r.fake.ResetCalls()
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(r.analyzeCalls()); n != 3 {
			t.Errorf("%d calls on the next poll, want 3", n)
		}
	})
}

// A debug-level log of a full refresh, failures with URLs included, holds
// no secret and no token.
func TestLogsHoldNoSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.fake.Inject(wshoto.TokenPath, wshototest.Fault{Status: 500})
		r.fake.Inject(wshoto.AnalyzePath, wshototest.Fault{Code: 40014, Msg: "access_token无效"}, wshototest.Fault{Body: "{broken"})
		ctx, cancel := context.WithCancel(context.Background())
		go r.run(ctx)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		cancel()
		logs := r.logs.String()
		if !strings.Contains(logs, "refresh failed") || !strings.Contains(logs, "refreshed") {
			t.Fatalf("the scenario did not fail and recover:\n%s", logs)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("secret in logs:\n%s", logs)
		}
		for _, c := range r.fake.Calls() {
			if c.Token != "" && strings.Contains(logs, c.Token) {
				t.Errorf("token %s in logs", c.Token)
			}
		}
		if s := r.target.Stats(); strings.Contains(s.LastError, secret) {
			t.Errorf("secret in last error")
		}
	})
}
