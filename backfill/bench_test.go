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
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// A year of 100 tags from the fake over loopback, with the default rate
// limit (10 calls/s, which sets the pace) and without one (the exporter's
// own cost). Reports upstream calls and samples per run.
func BenchmarkBackfill365Days100Tags(b *testing.B) {
	for _, limit := range []string{"default", "none"} {
		b.Run("ratelimit="+limit, func(b *testing.B) {
			ws := wshototest.New("bf-appid", "bf-secret")
			var ids []string
			ws.Tags = nil
			for i := range 100 {
				tag := wshototest.Tag{ID: fmt.Sprintf("tag%03d", i), Name: fmt.Sprintf("标签%d", i)}
				ws.Tags = append(ws.Tags, tag)
				ids = append(ids, strconv.Quote(tag.ID))
			}
			srv := ws.Start()
			defer srv.Close()
			rate := ""
			if limit == "none" {
				rate = ", rate_limit: 1000"
			}
			cfg, err := config.Parse("(bench)", []byte(fmt.Sprintf("wshoto:\n  - {name: acme, base_url: %q, appid: bf-appid, app_secret: bf-secret, tag_ids: [%s]%s}\n",
				srv.URL, strings.Join(ids, ", "), rate)))
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			end := calendar.LatestDailyDate(now, cfg.Global.Location)
			var rep *Report
			for b.Loop() {
				var out bytes.Buffer
				rep, err = Run(context.Background(), Options{Config: cfg, Start: end.AddDays(-364), End: end, Now: now}, &out)
				if err != nil || len(rep.Failures) > 0 {
					b.Fatal(err, rep.Summary())
				}
			}
			b.ReportMetric(float64(rep.Calls), "calls/op")
			b.ReportMetric(float64(rep.Samples), "samples/op")
		})
	}
}
