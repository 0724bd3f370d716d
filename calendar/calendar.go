// Package calendar is the one place for the date arithmetic of the
// upstreams: civil dates, T+1 data days, and the instants they begin at in
// the configured time zone.
package calendar

import (
	"fmt"
	"time"
)

// Date is a civil date with no time zone; the upstreams speak in these.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// DateOf returns the civil date of t in loc.
func DateOf(t time.Time, loc *time.Location) Date {
	y, m, d := t.In(loc).Date()
	return Date{y, m, d}
}

// Parse reads a date in the given Go layout (for example "2006-01-02").
func Parse(layout, s string) (Date, error) {
	t, err := time.Parse(layout, s)
	if err != nil {
		return Date{}, fmt.Errorf("date %q does not match %s", s, layout)
	}
	return DateOf(t, time.UTC), nil
}

// Start returns 00:00 of d in loc.
func (d Date) Start(loc *time.Location) time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
}

// AddDays returns d moved by n days (negative n goes back).
func (d Date) AddDays(n int) Date {
	return DateOf(time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, time.UTC), time.UTC)
}

// AddMonths returns d moved by n months, normalised as time.AddDate does.
func (d Date) AddMonths(n int) Date {
	return DateOf(time.Date(d.Year, d.Month+time.Month(n), d.Day, 12, 0, 0, 0, time.UTC), time.UTC)
}

// Compare returns -1, 0 or +1 as d is before, equal to or after e.
func (d Date) Compare(e Date) int {
	a, b := d.Year*10000+int(d.Month)*100+d.Day, e.Year*10000+int(e.Month)*100+e.Day
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Before reports whether d is before e.
func (d Date) Before(e Date) bool { return d.Compare(e) < 0 }

// After reports whether d is after e.
func (d Date) After(e Date) bool { return d.Compare(e) > 0 }

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

// Format formats d with a Go layout.
func (d Date) Format(layout string) string {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Format(layout)
}

// String is the ISO form, 2006-01-02.
func (d Date) String() string { return d.Format(time.DateOnly) }

// DaysSince returns the number of days from e to d.
func (d Date) DaysSince(e Date) int {
	a := time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
	b := time.Date(e.Year, e.Month, e.Day, 0, 0, 0, 0, time.UTC)
	return int(a.Sub(b).Hours() / 24)
}

// LatestDailyDate is the newest data day a T+1 upstream can have published
// at now: yesterday in loc.
func LatestDailyDate(now time.Time, loc *time.Location) Date {
	return DateOf(now, loc).AddDays(-1)
}

// NextMidnight returns the first 00:00 in loc strictly after now: the
// moment a new T+1 data day can begin to exist.
func NextMidnight(now time.Time, loc *time.Location) time.Time {
	return DateOf(now, loc).AddDays(1).Start(loc)
}

// Windows splits [from, to] into consecutive windows whose end is less
// than months months after their start, as APIs with a range limit demand.
func Windows(from, to Date, months int) [][2]Date {
	var out [][2]Date
	for start := from; !start.After(to); {
		end := start.AddMonths(months).AddDays(-1)
		if end.After(to) {
			end = to
		}
		out = append(out, [2]Date{start, end})
		start = end.AddDays(1)
	}
	return out
}
