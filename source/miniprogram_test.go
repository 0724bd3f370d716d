package source_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/collector"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
)

const wxApp = "wx0123456789abcdef"

type mpRig struct {
	fake   *wechattest.Server
	target *state.Target
	set    *state.Set
	job    *source.MiniprogramJob
}

func newMPRig(t *testing.T, kinds ...wechat.Kind) *mpRig {
	t.Helper()
	f := wechattest.New(wxApp, secret)
	r := &mpRig{fake: f, set: &state.Set{}}
	r.target = state.NewTarget(state.SourceMiniprogram, "shop", shanghai)
	r.set.Replace([]*state.Target{r.target})
	c, err := wechat.New(wechat.Options{BaseURL: "https://api.weixin.test", AppID: wxApp, Secret: secret,
		HTTP: upstreamtest.Client(f), RateLimit: 100, Observer: r.target, Location: shanghai})
	if err != nil {
		t.Fatal(err)
	}
	r.job = &source.MiniprogramJob{Client: c, AppID: wxApp, Kinds: kinds, Location: shanghai, Target: r.target,
		Logger: slog.New(slog.DiscardHandler)}
	return r
}

// retainCalls returns "begin_date" of each call to path, with its time.
func retainCalls(f *wechattest.Server, path string) (begins []string, at []time.Time) {
	for _, c := range f.Calls() {
		if c.Path != path {
			continue
		}
		var b struct {
			Begin string `json:"begin_date"`
		}
		_ = json.Unmarshal([]byte(c.Body), &b)
		begins = append(begins, b.Begin)
		at = append(at, c.At)
	}
	return begins, at
}

var retainMetrics = []string{
	"wechat_miniprogram_daily_retain_users", "wechat_miniprogram_daily_retain_ratio", "wechat_miniprogram_daily_retain_cohort_start_timestamp_seconds",
	"wechat_miniprogram_weekly_retain_users", "wechat_miniprogram_weekly_retain_ratio", "wechat_miniprogram_weekly_retain_cohort_start_timestamp_seconds",
	"wechat_miniprogram_monthly_retain_users", "wechat_miniprogram_monthly_retain_ratio", "wechat_miniprogram_monthly_retain_cohort_start_timestamp_seconds",
}

// Synctest's clock starts on Saturday 2000-01-01, 08:00 in Shanghai: the
// newest complete day is 1999-12-31, week Mon 1999-12-20..Sun 12-26,
// month December 1999.
func TestMiniprogramGoldenExposition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newMPRig(t, wechat.Daily, wechat.Weekly, wechat.Monthly)
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := testutil.CollectAndFormat(collector.New(r.set), expfmt.TypeTextPlain, retainMetrics...)
		if err != nil {
			t.Fatal(err)
		}
		const golden = "testdata/miniprogram.golden.prom"
		if *update {
			_ = os.WriteFile(golden, got, 0o644)
		}
		want, _ := os.ReadFile(golden)
		if !bytes.Equal(got, want) {
			t.Errorf("exposition differs from %s:\n%s", golden, got)
		}
		// Spot checks computed independently of the golden file.
		week0 := calendar.Date{Year: 1999, Month: 12, Day: 20}
		for key := range 5 {
			cohort := week0.AddDays(-7 * key)
			v := wechattest.DemoValue(wxApp, wechat.Weekly, cohort, key, false)
			line := fmt.Sprintf(`wechat_miniprogram_weekly_retain_users{app="shop",appid=%q,cohort="new",key="%d"} %s`, wxApp, key, fmtFloat(v))
			if !strings.Contains(string(got), line+"\n") {
				t.Errorf("missing %s", line)
			}
			start := fmt.Sprintf(`wechat_miniprogram_weekly_retain_cohort_start_timestamp_seconds{app="shop",appid=%q,key="%d"} %s`, wxApp, key, fmtFloat(float64(cohort.Start(shanghai).Unix())))
			if !strings.Contains(string(got), start+"\n") {
				t.Errorf("missing %s", start)
			}
			if key > 0 {
				ratio := v / wechattest.DemoValue(wxApp, wechat.Weekly, cohort, 0, false)
				rl := fmt.Sprintf(`wechat_miniprogram_weekly_retain_ratio{app="shop",appid=%q,cohort="new",key="%d"} %s`, wxApp, key, fmtFloat(ratio))
				if !strings.Contains(string(got), rl+"\n") {
					t.Errorf("missing %s", rl)
				}
			}
		}
		if strings.Contains(string(got), `retain_ratio{app="shop",appid="`+wxApp+`",cohort="new",key="0"}`) {
			t.Error("key 0 has no ratio")
		}
		// Daily key 30 comes from 1999-12-01, monthly key 1 from November.
		for _, want := range []string{
			fmt.Sprintf(`wechat_miniprogram_daily_retain_cohort_start_timestamp_seconds{app="shop",appid=%q,key="30"} %s`, wxApp, fmtFloat(float64(calendar.Date{Year: 1999, Month: 12, Day: 1}.Start(shanghai).Unix()))),
			fmt.Sprintf(`wechat_miniprogram_monthly_retain_cohort_start_timestamp_seconds{app="shop",appid=%q,key="1"} %s`, wxApp, fmtFloat(float64(calendar.Date{Year: 1999, Month: 11, Day: 1}.Start(shanghai).Unix()))),
		} {
			if !strings.Contains(string(got), want+"\n") {
				t.Errorf("missing %s", want)
			}
		}
	})
}

// fmtFloat formats v as the text exposition does.
func fmtFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func TestMiniprogramGoldenPassesPromtool(t *testing.T) {
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin, _ = os.Open("testdata/miniprogram.golden.prom")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Eight simulated weeks of a weekly-only app whose data appears on Monday
// at 10:00: after the first refresh, each week costs the polls from 08:00
// to 10:00 plus one call per key; no cohort is asked for after its last
// key (4) arrived.
func TestEightWeeksOfWeeklyCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newMPRig(t, wechat.Weekly)
		r.fake.PublishDelay = 10 * time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := scheduler.DefaultPolicy(13*time.Minute + 20*time.Second)
		p.Rand = func() float64 { return 0.5 } // polls 90 % of that apart: 12 min
		p.Spread = 0
		go scheduler.Run(ctx, r.job, p, r.target, slog.New(slog.DiscardHandler))
		time.Sleep(8 * 7 * 24 * time.Hour)
		synctest.Wait()
		begins, at := retainCalls(r.fake, wechat.WeeklyPath)

		perWeek := map[string]int{}
		started := at[0]
		for i, b := range begins {
			cohort, _ := calendar.Parse(wechat.DateLayout, b)
			week := calendar.WeekStart(calendar.DateOf(at[i], shanghai))
			perWeek[week.String()]++
			// Key 4 of a cohort is published 5 weeks after its Monday, at 10:00.
			matured := cohort.AddDays(35).Start(shanghai).Add(10 * time.Hour)
			if at[i].After(matured) && !at[i].Equal(started) { // the first refresh needs it once
				t.Errorf("cohort %s asked for at %s, after it matured", b, at[i].In(shanghai))
			}
			if h := at[i].In(shanghai); h.Weekday() != time.Saturday && (h.Hour() < 8 || h.Hour() > 10) {
				t.Errorf("call at %s: outside Monday 08:00-10:00", h)
			}
		}
		t.Logf("weekly calls per week: %v (total %d over 8 weeks)", perWeek, len(begins))
		if first := perWeek["1999-12-27"]; first != 5 {
			t.Errorf("first refresh week: %d calls, want 5", first)
		}
		// 08:00..09:48 every 12 min: 10 empty polls, then 5 keys at 10:00.
		lastWeek := calendar.Date{Year: 2000, Month: 2, Day: 21}
		for w := (calendar.Date{Year: 2000, Month: 1, Day: 3}); w.Before(lastWeek); w = w.AddDays(7) {
			if n := perWeek[w.String()]; n != 15 {
				t.Errorf("week of %s: %d calls, want 15", w, n)
			}
		}
		if n := r.fake.CallCount(wechat.ClassicTokenPath); n != 0 {
			t.Errorf("stable mode called /cgi-bin/token %d times", n)
		}
		// After 8 weeks each key comes from its own cohort.
		now := time.Now()
		latest := calendar.Week.LatestComplete(now, shanghai)
		for _, k := range r.target.Snapshot().Miniprogram.Retain[wechat.Weekly] {
			if want := latest.AddDays(-7 * k.Key).Start(shanghai); !k.CohortStart.Equal(want) {
				t.Errorf("key %d from cohort %s, want %s", k.Key, k.CohortStart, want)
			}
		}
	})
}

// Until a new week is published the previous assignment is served; a key
// whose own cohort is not published yet comes from the cohort before.
func TestUnpublishedWeekServesPrevious(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newMPRig(t, wechat.Weekly)
		r.fake.PublishDelay = 10 * time.Hour
		// Jump to Monday 2000-01-03 09:00: the week of 12-27 has ended but
		// is not published; the exporter starts now with nothing.
		time.Sleep(time.Until(time.Date(2000, 1, 3, 9, 0, 0, 0, shanghai)))
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		keys := r.target.Snapshot().Miniprogram.Retain[wechat.Weekly]
		if len(keys) != 5 {
			t.Fatalf("%d keys served, want 5 from older cohorts", len(keys))
		}
		for _, k := range keys {
			// Newest published: key k from week 12-20 minus k weeks.
			want := calendar.Date{Year: 1999, Month: 12, Day: 20}.AddDays(-7 * k.Key).Start(shanghai)
			if !k.CohortStart.Equal(want) {
				t.Errorf("key %d from %s, want %s", k.Key, k.CohortStart, want)
			}
		}
	})
}

// A 45009 stops calls to that API until the next day; the other kinds go on.
func TestDailyQuotaBlocksOnlyThatAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newMPRig(t, wechat.Daily, wechat.Weekly)
		r.fake.Inject(wechat.WeeklyPath, wechattest.Fault{Code: 45009, Msg: "reach max api daily quota limit"})
		out, err := r.job.Refresh(context.Background())
		if e, ok := apicall.AsError(err); !ok || e.Reason != "quota" || !e.RetryAfter.IsZero() {
			t.Fatalf("err %v (the job blocks the API itself; the scheduler backs off normally)", err)
		}
		if out.Current || len(r.target.Snapshot().Miniprogram.Retain[wechat.Daily]) != 10 {
			t.Fatalf("daily not served: %+v", out)
		}
		r.fake.ResetCalls()
		time.Sleep(time.Hour)
		// Still a failure (weekly cannot be refreshed), without a call.
		if _, err := r.job.Refresh(context.Background()); apicall.ReasonOf(err) != "quota" {
			t.Fatalf("while blocked: err %v, want the quota error again", err)
		}
		if n := r.fake.CallCount(wechat.WeeklyPath); n != 0 {
			t.Errorf("%d weekly calls while its daily quota is spent", n)
		}
		time.Sleep(time.Until(time.Date(2000, 1, 2, 0, 1, 0, 0, shanghai)))
		if _, err := r.job.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := r.fake.CallCount(wechat.WeeklyPath); n != 5 {
			t.Errorf("%d weekly calls the next day, want 5", n)
		}
	})
}
