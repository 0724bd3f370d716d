package calendar

import (
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestLatestDailyDateAcrossMidnight(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	cases := []struct {
		utc  string
		loc  *time.Location
		want string
	}{
		// 15:59:59 UTC is 23:59:59 in Shanghai: yesterday is still the 20th.
		{"2026-11-21T15:59:59Z", sh, "2026-11-20"},
		// One second later Shanghai is on the 22nd, UTC still on the 21st.
		{"2026-11-21T16:00:00Z", sh, "2026-11-21"},
		{"2026-11-21T16:00:00Z", time.UTC, "2026-11-20"},
		// Year and leap-day edges.
		{"2026-12-31T16:00:00Z", sh, "2026-12-31"},
		{"2028-02-29T16:00:00Z", sh, "2028-02-29"},
		{"2028-03-01T01:00:00Z", sh, "2028-02-29"},
	}
	for _, c := range cases {
		now, _ := time.Parse(time.RFC3339, c.utc)
		if got := LatestDailyDate(now, c.loc).String(); got != c.want {
			t.Errorf("LatestDailyDate(%s, %s) = %s, want %s", c.utc, c.loc, got, c.want)
		}
	}
}

func TestNextMidnight(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	now, _ := time.Parse(time.RFC3339, "2026-11-21T15:59:59Z")
	want, _ := time.Parse(time.RFC3339, "2026-11-21T16:00:00Z")
	if got := NextMidnight(now, sh); !got.Equal(want) {
		t.Errorf("NextMidnight = %s, want %s", got, want)
	}
	// Exactly at midnight the next one is a day later.
	if got := NextMidnight(want, sh); !got.Equal(want.Add(24 * time.Hour)) {
		t.Errorf("NextMidnight at midnight = %s", got)
	}
	// A 23-hour day: New York's spring-forward.
	ny := mustLoc(t, "America/New_York")
	spring := time.Date(2026, 3, 8, 0, 30, 0, 0, ny)
	if got := NextMidnight(spring, ny).Sub(spring); got != 22*time.Hour+30*time.Minute {
		t.Errorf("spring-forward day: %s to midnight", got)
	}
}

func TestWindows(t *testing.T) {
	d := func(s string) Date { x, _ := Parse(time.DateOnly, s); return x }
	got := Windows(d("2025-11-30"), d("2026-06-10"), 3)
	want := [][2]string{{"2025-11-30", "2026-03-01"}, {"2026-03-02", "2026-06-01"}, {"2026-06-02", "2026-06-10"}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i][0].String() != want[i][0] || got[i][1].String() != want[i][1] {
			t.Errorf("window %d = %v..%v, want %v", i, got[i][0], got[i][1], want[i])
		}
		// Every window is within the 3-month limit as the upstream checks it.
		if got[i][1].After(got[i][0].AddMonths(3)) {
			t.Errorf("window %d exceeds 3 months", i)
		}
	}
	if one := Windows(d("2026-01-05"), d("2026-01-05"), 3); len(one) != 1 || one[0][0] != one[0][1] {
		t.Errorf("single day: %v", one)
	}
	if none := Windows(d("2026-01-06"), d("2026-01-05"), 3); len(none) != 0 {
		t.Errorf("empty range: %v", none)
	}
}

func TestDateArithmetic(t *testing.T) {
	d := Date{2026, 12, 31}
	if d.AddDays(1) != (Date{2027, 1, 1}) || d.AddDays(-365) != (Date{2025, 12, 31}) {
		t.Error("AddDays across year")
	}
	if (Date{2027, 1, 1}).DaysSince(d) != 1 {
		t.Error("DaysSince")
	}
	if _, err := Parse(time.DateOnly, "2026-13-01"); err == nil {
		t.Error("bad date parsed")
	}
}

func TestNaturalWeeksAcrossSundayMidnight(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	at := func(s string) time.Time { x, _ := time.ParseInLocation("2006-01-02 15:04:05", s, sh); return x }
	cases := []struct {
		now        string
		latest     string // Monday of the newest complete week
		nextMonday string
	}{
		// Sunday 23:59:59: the current week (from Mon 16th) is not over.
		{"2026-11-22 23:59:59", "2026-11-09", "2026-11-23 00:00:00"},
		// Monday 00:00: the week of the 16th has just ended.
		{"2026-11-23 00:00:00", "2026-11-16", "2026-11-30 00:00:00"},
		// Across a year end: Mon 2026-12-28 .. Sun 2027-01-03.
		{"2027-01-04 09:00:00", "2026-12-28", "2027-01-11 00:00:00"},
	}
	for _, c := range cases {
		now := at(c.now)
		if got := Week.LatestComplete(now, sh).String(); got != c.latest {
			t.Errorf("LatestComplete week at %s = %s, want %s", c.now, got, c.latest)
		}
		if got := Week.NextBoundary(now, sh); !got.Equal(at(c.nextMonday)) {
			t.Errorf("NextBoundary at %s = %s", c.now, got)
		}
	}
	// Sunday 16:00 UTC is already Monday in Shanghai.
	utcSunday := time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)
	if got := Week.LatestComplete(utcSunday, sh).String(); got != "2026-11-16" {
		t.Errorf("in Shanghai the week has ended: %s", got)
	}
	if got := Week.LatestComplete(utcSunday, time.UTC).String(); got != "2026-11-09" {
		t.Errorf("in UTC it has not: %s", got)
	}
	if end := Week.End(Date{2026, 12, 28}); end != (Date{2027, 1, 3}) || end.Weekday() != time.Sunday {
		t.Errorf("week end %v", end)
	}
}

func TestNaturalMonthsAcrossMonthEnds(t *testing.T) {
	sh := mustLoc(t, "Asia/Shanghai")
	cases := []struct{ now, latest, end string }{
		{"2026-03-01T00:00:00+08:00", "2026-02-01", "2026-02-28"},
		{"2026-02-28T23:59:59+08:00", "2026-01-01", "2026-01-31"},
		{"2028-03-01T00:00:01+08:00", "2028-02-01", "2028-02-29"},
		{"2027-01-01T00:00:00+08:00", "2026-12-01", "2026-12-31"},
	}
	for _, c := range cases {
		now, _ := time.Parse(time.RFC3339, c.now)
		m := Month.LatestComplete(now, sh)
		if m.String() != c.latest || Month.End(m).String() != c.end {
			t.Errorf("at %s: month %s..%s, want %s..%s", c.now, m, Month.End(m), c.latest, c.end)
		}
	}
	now, _ := time.Parse(time.RFC3339, "2026-01-31T23:00:00+08:00")
	if got := Month.NextBoundary(now, sh); got.Format(time.RFC3339) != "2026-02-01T00:00:00+08:00" {
		t.Errorf("next month boundary %s", got)
	}
	if got := Day.LatestComplete(now, sh).String(); got != "2026-01-30" {
		t.Errorf("latest day %s", got)
	}
}
