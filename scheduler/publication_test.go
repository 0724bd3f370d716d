package scheduler

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/state"
)

// dailyJob is an upstream publishing each day's data at 02:00 UTC: before,
// a refresh is not current; after, it is current until the next midnight.
type dailyJob struct{ calls []time.Time }

func (j *dailyJob) Refresh(context.Context) (Outcome, error) {
	now := time.Now().UTC()
	j.calls = append(j.calls, now)
	midnight := now.Truncate(24 * time.Hour)
	if now.Before(midnight.Add(2 * time.Hour)) {
		return Outcome{}, nil
	}
	return Outcome{Current: true, NextData: midnight.Add(24 * time.Hour)}, nil
}

// The loop learns the 02:00 publication: after three days it starts
// polling at 01:45 instead of midnight, and a restart with the same store
// file keeps it.
func TestPollingFollowsLearnedPublication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "state.json")
		store, err := LoadStore(file)
		if err != nil {
			t.Fatal(err)
		}
		job := &dailyJob{}
		p := DefaultPolicy(15 * time.Minute)
		p.Rand, p.Spread, p.Learn = func() float64 { return 1 }, 0, store.For("wshoto/acme")
		ctx, cancel := context.WithCancel(context.Background())
		go Run(ctx, job, p, state.NewTarget("wshoto", "acme", time.UTC), slog.New(slog.DiscardHandler))
		perDay := func() map[int]int {
			m := map[int]int{}
			for _, c := range job.calls {
				m[c.YearDay()]++
			}
			return m
		}
		time.Sleep(6*24*time.Hour + time.Hour) // to day 7, 01:00
		synctest.Wait()
		cancel()
		days := perDay()
		// Until three publications are known: polls from 00:00 every
		// 14m15s (95 % of 15 min with Rand 1), the tenth finds the data.
		// Then the first poll is 15 min before the earliest seen, the
		// second finds the data.
		if days[2] != 10 || days[4] != 10 || days[5] != 2 || days[6] != 2 {
			t.Errorf("calls per day %v: want 10 before learning, 2 after", days)
		}
		if off, ok := p.Learn.StartOffset(p.PollInterval); !ok || off < 105*time.Minute || off > 2*time.Hour {
			t.Errorf("start offset %s %v, want between 01:45 and 02:00", off, ok)
		}

		again, err := LoadStore(file)
		if err != nil {
			t.Fatal(err)
		}
		if off, ok := again.For("wshoto/acme").StartOffset(p.PollInterval); !ok || off < time.Hour {
			t.Errorf("after a restart: start offset %s, %v", off, ok)
		}
	})
}

// A corrupt state file is reported and replaced, never fatal.
func TestCorruptStateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadStore(file)
	if err == nil || s == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("store %v, err %v", s, err)
	}
	s.For("wshoto/acme").Add(Observation{Due: time.Unix(0, 0), FirstHit: time.Unix(7200, 0)})
	again, err := LoadStore(file)
	if err != nil || len(again.For("wshoto/acme").Observations()) != 1 {
		t.Fatalf("rewritten file: %v", err)
	}
}
