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
