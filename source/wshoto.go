// Package source holds the refresh job of each upstream: which period of
// data to ask for, whether it is published yet, and which snapshot to
// publish. It also builds the scheduler units of a configuration.
package source

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

// TagStatser is the part of the wshoto client a job needs.
type TagStatser interface {
	TagStats(ctx context.Context, tagIDs []string, from, to calendar.Date) ([]wshoto.Record, error)
}

// WshotoJob refreshes one wshoto corp. Data is T+1: at any moment the
// newest day that can exist is yesterday in Location.
type WshotoJob struct {
	Client   TagStatser
	TagIDs   []string
	Location *time.Location
	// LookbackDays bounds how far back a target with no data looks for
	// the newest published day.
	LookbackDays int
	Target       *state.Target
	Logger       *slog.Logger
}

// Refresh asks for the days newer than the snapshot, newest first, and
// publishes the newest day that has records. When the snapshot already
// holds yesterday it makes no call.
func (j *WshotoJob) Refresh(ctx context.Context) (scheduler.Outcome, error) {
	now := time.Now()
	expected := calendar.LatestDailyDate(now, j.Location)
	next := calendar.NextMidnight(now, j.Location)

	oldest := expected.AddDays(1 - max(j.LookbackDays, 1))
	// A snapshot asked for other tags (the configuration changed) is
	// served until a new one arrives but does not count as current.
	if snap := j.Target.Snapshot(); snap != nil && snap.Wshoto != nil && slices.Equal(snap.Wshoto.TagIDs, j.TagIDs) {
		have := snap.Wshoto.Date
		if !have.Before(expected) {
			return scheduler.Outcome{Current: true, NextData: next}, nil
		}
		if have.AddDays(1).After(oldest) {
			oldest = have.AddDays(1)
		}
	}
	for day := expected; !day.Before(oldest); day = day.AddDays(-1) {
		recs, err := j.Client.TagStats(ctx, j.TagIDs, day, day)
		if err != nil {
			return scheduler.Outcome{}, err
		}
		if len(recs) == 0 {
			j.Logger.Debug("data day not published yet", "ds", day)
			continue
		}
		j.Target.Publish(&state.Snapshot{Wshoto: &state.Wshoto{TagIDs: j.TagIDs, Date: day, DateStart: day.Start(j.Location), Records: recs}})
		j.Logger.Info("refreshed", "ds", day, "tags", len(recs))
		return scheduler.Outcome{Current: day == expected, NextData: next}, nil
	}
	return scheduler.Outcome{NextData: next}, nil
}
