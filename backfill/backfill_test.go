package backfill

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

func date(s string) calendar.Date {
	d, err := calendar.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func zone(t *testing.T, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// A sample is stamped 00:00 local of the day after its period ends, in the
// configured zone: across DST changes, year ends and leap years.
func TestStamp(t *testing.T) {
	for _, tc := range []struct {
		zone   string
		period calendar.Period
		start  string
		want   string // RFC 3339
	}{
		{"Asia/Shanghai", calendar.Day, "2026-11-21", "2026-11-22T00:00:00+08:00"},
		{"Asia/Shanghai", calendar.Day, "2026-12-31", "2027-01-01T00:00:00+08:00"},
		{"UTC", calendar.Day, "2028-02-28", "2028-02-29T00:00:00Z"},
		// New York: the day before spring-forward and fall-back; both
		// midnights exist, with different offsets.
		{"America/New_York", calendar.Day, "2026-03-07", "2026-03-08T00:00:00-05:00"},
		{"America/New_York", calendar.Day, "2026-03-08", "2026-03-09T00:00:00-04:00"},
		{"America/New_York", calendar.Day, "2026-11-01", "2026-11-02T00:00:00-05:00"},
		// Weeks: Monday 00:00 after the Sunday, across a year end.
		{"Asia/Shanghai", calendar.Week, "2026-11-09", "2026-11-16T00:00:00+08:00"},
		{"Asia/Shanghai", calendar.Week, "2025-12-29", "2026-01-05T00:00:00+08:00"},
		{"America/New_York", calendar.Week, "2026-03-02", "2026-03-09T00:00:00-04:00"},
		// Months: the 1st of the next month.
		{"Asia/Shanghai", calendar.Month, "2026-12-01", "2027-01-01T00:00:00+08:00"},
		{"Asia/Shanghai", calendar.Month, "2028-02-01", "2028-03-01T00:00:00+08:00"},
		{"America/New_York", calendar.Month, "2026-10-01", "2026-11-01T00:00:00-04:00"},
	} {
		got := Stamp(tc.period, date(tc.start), zone(t, tc.zone))
		want, _ := time.Parse(time.RFC3339, tc.want)
		if !got.Equal(want) {
			t.Errorf("%s %v %s: stamp %s, want %s", tc.zone, tc.period, tc.start, got, want)
		}
	}
	// The same data day is a different instant in another zone.
	sh := Stamp(calendar.Day, date("2026-11-21"), zone(t, "Asia/Shanghai"))
	utc := Stamp(calendar.Day, date("2026-11-21"), time.UTC)
	if utc.Sub(sh) != 8*time.Hour {
		t.Errorf("Shanghai and UTC stamps %s apart, want 8h", utc.Sub(sh))
	}
}

// The periods of a range are those whose last day lies in it.
func TestPeriods(t *testing.T) {
	for _, tc := range []struct {
		period   calendar.Period
		from, to string
		want     []string
	}{
		{calendar.Day, "2026-11-20", "2026-11-21", []string{"2026-11-20", "2026-11-21"}},
		// 2026-11-15 is a Sunday: the week of the 9th ends in range.
		{calendar.Week, "2026-11-12", "2026-11-21", []string{"2026-11-09"}},
		{calendar.Week, "2026-11-16", "2026-11-21", nil},
		{calendar.Week, "2026-11-15", "2026-11-22", []string{"2026-11-09", "2026-11-16"}},
		{calendar.Month, "2026-09-15", "2026-11-21", []string{"2026-09-01", "2026-10-01"}},
	} {
		var got []string
		for _, d := range Periods(tc.period, date(tc.from), date(tc.to)) {
			got = append(got, d.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%v %s..%s = %v, want %v", tc.period, tc.from, tc.to, got, tc.want)
		}
	}
}

func TestRefusesUnpublishedRange(t *testing.T) {
	sh := zone(t, "Asia/Shanghai")
	// 2026-11-22 00:30 in Shanghai is still the 21st in UTC: the zone decides.
	now := time.Date(2026, 11, 22, 0, 30, 0, 0, sh)
	err := CheckRange(date("2026-11-01"), date("2026-11-22"), now, sh)
	if err == nil || !strings.Contains(err.Error(), "newest day to backfill is 2026-11-21") {
		t.Errorf("end today: %v", err)
	}
	if err := CheckRange(date("2026-11-01"), date("2026-11-21"), now, sh); err != nil {
		t.Errorf("end yesterday: %v", err)
	}
	if err := CheckRange(date("2026-11-05"), date("2026-11-01"), now, sh); err == nil {
		t.Error("reversed range accepted")
	}
}

type fakes struct {
	ws  *wshototest.Server
	wc  *wechattest.Server
	cfg *config.Config
}

func startFakes(t *testing.T, retain string) *fakes {
	t.Helper()
	ws := wshototest.New("bf-appid", "bf-secret")
	wsSrv := ws.Start()
	t.Cleanup(wsSrv.Close)
	wc := wechattest.New("wxbf0123456789abcd", "bf-secret-2")
	wcSrv := wc.Start()
	t.Cleanup(wcSrv.Close)
	var ids []string
	for _, tag := range wshototest.DemoTags {
		ids = append(ids, strconv.Quote(tag.ID))
	}
	cfg, err := config.Parse("(test)", []byte(fmt.Sprintf(`global:
  timezone: Asia/Shanghai
wshoto:
  - {name: acme, base_url: %q, appid: bf-appid, app_secret: bf-secret, tag_ids: [%s], rate_limit: 1000}
wechat_miniprogram:
  - {name: shop, base_url: %q, appid: wxbf0123456789abcd, secret: bf-secret-2, retain: [%s], rate_limit: 1000}
`, wsSrv.URL, strings.Join(ids, ", "), wcSrv.URL, retain)))
	if err != nil {
		t.Fatal(err)
	}
	return &fakes{ws, wc, cfg}
}

// samples reads OpenMetrics text into "series@unix" -> value.
func samples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	if !strings.HasSuffix(text, "# EOF\n") {
		t.Fatal("output does not end in # EOF")
	}
	out := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		series := strings.Join(f[:len(f)-2], " ")
		v, err := strconv.ParseFloat(f[len(f)-2], 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		out[series+"@"+f[len(f)-1]] = v
	}
	return out
}

// pages counts the data calls of windows over the demo tags, 100 records
// a page.
func pages(windows ...[2]calendar.Date) int {
	n := 0
	for _, w := range windows {
		records := (w[1].DaysSince(w[0]) + 1) * len(wshototest.DemoTags)
		n += (records + 99) / 100
	}
	return n
}

func at(tm time.Time) string { return strconv.FormatInt(tm.Unix(), 10) }

// Against the fakes: every data day D at D+1 00:00 with the upstream's
// values and date gauge; every weekly stamp with key k from the cohort k
// weeks before the newest complete one; calls one per window and cohort.
func TestRunAgainstFakes(t *testing.T) {
	f := startFakes(t, "weekly, daily, monthly")
	loc := f.cfg.Global.Location
	now := time.Now()
	end := calendar.LatestDailyDate(now, loc).AddDays(-1) // surely published
	start := end.AddDays(-44)
	var out, progress bytes.Buffer
	rep, err := Run(context.Background(), Options{Config: f.cfg, Start: start, End: end, Now: now, Progress: &progress}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) > 0 {
		t.Fatalf("failures: %s", rep.Summary())
	}
	got := samples(t, out.String())

	for d := start; !d.After(end); d = d.AddDays(1) {
		stamp := at(d.AddDays(1).Start(loc))
		for _, tag := range wshototest.DemoTags {
			want := wshototest.DemoRecord(tag, d)["total_customer_cnt"].(int64)
			key := fmt.Sprintf(`wshoto_group_customers{corp="acme",tag_id=%q,tag_name=%q}@%s`, tag.ID, tag.Name, stamp)
			if v, ok := got[key]; !ok || v != float64(want) {
				t.Fatalf("%s = %v (present %v), want %d", key, v, ok, want)
			}
		}
		if v := got[`wshoto_group_stats_date_timestamp_seconds{corp="acme"}@`+stamp]; v != float64(d.Start(loc).Unix()) {
			t.Errorf("date gauge at %s = %v, want %s", d, v, d)
		}
	}
	if n := strings.Count(out.String(), "\nwshoto_group_customers{"); n != 45*len(wshototest.DemoTags) {
		t.Errorf("%d wshoto_group_customers samples, want one per tag and day (%d)", n, 45*len(wshototest.DemoTags))
	}

	for _, w := range Periods(calendar.Week, start, end) {
		stamp := at(Stamp(calendar.Week, w, loc))
		for key := 0; key <= 4; key++ {
			cohort := calendar.Week.Add(w, -key)
			want := wechattest.DemoValue(f.wc.AppID, wechat.Weekly, cohort, key, false)
			series := fmt.Sprintf(`wechat_miniprogram_weekly_retain_users{app="shop",appid="wxbf0123456789abcd",cohort="new",key="%d"}@%s`, key, stamp)
			if v, ok := got[series]; !ok || v != want {
				t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
			}
			cs := fmt.Sprintf(`wechat_miniprogram_weekly_retain_cohort_start_timestamp_seconds{app="shop",appid="wxbf0123456789abcd",key="%d"}@%s`, key, stamp)
			if got[cs] != float64(cohort.Start(loc).Unix()) {
				t.Errorf("%s = %v, want %s", cs, got[cs], cohort)
			}
			if key > 0 {
				ratio := fmt.Sprintf(`wechat_miniprogram_weekly_retain_ratio{app="shop",appid="wxbf0123456789abcd",cohort="new",key="%d"}@%s`, key, stamp)
				if want := want / wechattest.DemoValue(f.wc.AppID, wechat.Weekly, cohort, 0, false); got[ratio] != want {
					t.Errorf("%s = %v, want %v", ratio, got[ratio], want)
				}
			}
		}
	}
	// Daily key 30 at the stamp of day D comes from day D-30.
	d := end
	want := wechattest.DemoValue(f.wc.AppID, wechat.Daily, d.AddDays(-30), 30, true)
	series := fmt.Sprintf(`wechat_miniprogram_daily_retain_users{app="shop",appid="wxbf0123456789abcd",cohort="active",key="30"}@%s`, at(d.AddDays(1).Start(loc)))
	if got[series] != want {
		t.Errorf("%s = %v, want %v", series, got[series], want)
	}
	if strings.Contains(out.String(), "wechat_retention_exporter_") {
		t.Error("the exporter's own metrics are in the backfill")
	}

	// Calls: one per page of each 3-month window, one per cohort, one
	// token per client.
	if n, want := f.ws.CallCount(wshoto.AnalyzePath), pages(calendar.Windows(start, end, wshoto.WindowMonths)...); n != want {
		t.Errorf("%d wshoto data calls, want %d (one per page)", n, want)
	}
	weekly := len(neededCohorts(wechat.Weekly, Periods(calendar.Week, start, end)))
	if n := f.wc.CallCount(wechat.WeeklyPath); n != weekly {
		t.Errorf("%d weekly calls, want %d (one per cohort)", n, weekly)
	}
	if n := f.wc.CallCount(wechat.StableTokenPath); n != 1 {
		t.Errorf("%d token calls, want 1 (one token for the three kinds)", n)
	}
	if rep.Calls != len(f.ws.Calls())+len(f.wc.Calls()) {
		t.Errorf("report counts %d calls, the fakes saw %d", rep.Calls, len(f.ws.Calls())+len(f.wc.Calls()))
	}
	if !strings.Contains(progress.String(), "backfill: 1/") || !strings.Contains(progress.String(), "ETA") {
		t.Errorf("progress lines:\n%s", progress.String())
	}
}

// A window that keeps failing ends that source's run there: what came
// before is written, the report names the failed window and the command
// that fetches the rest, and the retries are bounded.
func TestFailedWindowIsReportedAndResumable(t *testing.T) {
	f := startFakes(t, "weekly")
	loc := f.cfg.Global.Location
	now := time.Now()
	end := calendar.LatestDailyDate(now, loc).AddDays(-1)
	start := end.AddDays(-150) // two or three windows
	windows := calendar.Windows(start, end, wshoto.WindowMonths)
	for range pages(windows[0]) { // the first window's pages answer
		f.ws.Inject(wshoto.AnalyzePath, upstreamtest.Fault{})
	}
	for range attempts {
		f.ws.Inject(wshoto.AnalyzePath, upstreamtest.Fault{Status: 500}) // not retried by the client
	}
	var slept []time.Duration
	var out bytes.Buffer
	rep, err := Run(context.Background(), Options{Config: f.cfg, Start: start, End: end, Now: now, Source: "wshoto",
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].From != windows[1][0] {
		t.Fatalf("failures %+v, want one from %s", rep.Failures, windows[1][0])
	}
	sum := rep.Summary()
	for _, want := range []string{"FAILED wshoto acme from " + windows[1][0].String(), "--start=" + windows[1][0].String(), "--end=" + end.String(), "HTTP status 500"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	if n, want := f.ws.CallCount(wshoto.AnalyzePath), pages(windows[0])+attempts; n != want {
		t.Errorf("%d data calls, want %d (bounded retries)", n, want)
	}
	if fmt.Sprint(slept) != "[1s 2s 4s 8s]" {
		t.Errorf("waits %v", slept)
	}
	got := samples(t, out.String())
	tag := wshototest.DemoTags[0]
	for _, d := range []calendar.Date{windows[0][0], windows[0][1]} {
		key := fmt.Sprintf(`wshoto_group_customers{corp="acme",tag_id=%q,tag_name=%q}@%s`, tag.ID, tag.Name, at(d.AddDays(1).Start(loc)))
		if _, ok := got[key]; !ok {
			t.Errorf("day %s of the good window missing", d)
		}
	}
	if strings.Contains(out.String(), "wechat_miniprogram") {
		t.Error("--source=wshoto wrote mini-program data")
	}
	missing := fmt.Sprintf(`@%s`, at(windows[1][0].AddDays(1).Start(loc)))
	for k := range got {
		if strings.HasSuffix(k, missing) {
			t.Errorf("sample from the failed window: %s", k)
		}
	}

	// Running again for the rest, as the report says, fills the gap.
	out.Reset()
	rep, err = Run(context.Background(), Options{Config: f.cfg, Start: windows[1][0], End: end, Now: now, Source: "wshoto"}, &out)
	if err != nil || len(rep.Failures) > 0 {
		t.Fatalf("resume: %v %+v", err, rep)
	}
	if !strings.Contains(out.String(), missing+"\n") && !strings.Contains(out.String(), " "+missing[1:]+"\n") {
		t.Error("the resumed run lacks the failed window's first day")
	}
}
