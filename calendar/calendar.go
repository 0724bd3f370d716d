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

// Weekday returns the day of the week of d.
func (d Date) Weekday() time.Weekday {
	return time.Date(d.Year, d.Month, d.Day, 12, 0, 0, 0, time.UTC).Weekday()
}

// WeekStart returns the Monday of d's natural week (Monday–Sunday).
func WeekStart(d Date) Date {
	return d.AddDays(-((int(d.Weekday()) + 6) % 7))
}

// MonthStart returns the 1st of d's month.
func MonthStart(d Date) Date { return Date{d.Year, d.Month, 1} }

// MonthEnd returns the last day of d's month.
func MonthEnd(d Date) Date { return MonthStart(d).AddMonths(1).AddDays(-1) }

// Period is a kind of natural period the retention APIs count in.
type Period int

// The periods, as in getweanalysisappid{daily,weekly,monthly}retaininfo.
const (
	Day Period = iota
	Week
	Month
)

// Start returns the first day of the period of kind p that contains d.
func (p Period) Start(d Date) Date {
	switch p {
	case Week:
		return WeekStart(d)
	case Month:
		return MonthStart(d)
	}
	return d
}

// Add moves the period starting at d by n periods.
func (p Period) Add(d Date, n int) Date {
	switch p {
	case Week:
		return d.AddDays(7 * n)
	case Month:
		return d.AddMonths(n)
	}
	return d.AddDays(n)
}

// End returns the last day of the period starting at d.
func (p Period) End(d Date) Date { return p.Add(d, 1).AddDays(-1) }

// LatestComplete returns the start of the newest period of kind p that
// has ended by now in loc: yesterday, last week's Monday, last month's 1st.
func (p Period) LatestComplete(now time.Time, loc *time.Location) Date {
	return p.Add(p.Start(DateOf(now, loc)), -1)
}

// NextBoundary returns the first moment after now at which a new period
// of kind p begins in loc: the next midnight, Monday 00:00, or the 1st.
func (p Period) NextBoundary(now time.Time, loc *time.Location) time.Time {
	return p.Add(p.Start(DateOf(now, loc)), 1).Start(loc)
}
