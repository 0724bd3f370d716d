package source_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// BenchmarkWshotoRefresh measures a first refresh of N tags against the
// fake over loopback HTTP, with the default batch and page sizes and the
// rate limit lifted (the default of 10 calls/s would dominate): records
// decoded per second, and the peak of the live heap above its level before
// the refresh (sampled every millisecond), per 1,000 tags.
func BenchmarkWshotoRefresh(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("tags=%d", n), func(b *testing.B) {
			f := wshototest.New(appID, secret)
			f.Tags = nil
			var ids []string
			for i := range n {
				id := fmt.Sprintf("tag%05d", i)
				f.Tags = append(f.Tags, wshototest.Tag{ID: id, Name: fmt.Sprintf("标签%d", i)})
				ids = append(ids, id)
			}
			srv := f.Start()
			defer srv.Close()
			client, err := wshoto.New(wshoto.Options{BaseURL: srv.URL, AppID: appID, AppSecret: secret,
				HTTP: &http.Client{Timeout: 10 * time.Second}, RateLimit: 1e6})
			if err != nil {
				b.Fatal(err)
			}
			var peak uint64
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
				base := heapBytes()
				stop := make(chan struct{})
				sampled := make(chan uint64)
				go func() {
					top := heapBytes()
					tick := time.NewTicker(time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							sampled <- max(top, heapBytes())
							return
						case <-tick.C:
							top = max(top, heapBytes())
						}
					}
				}()
				t := state.NewTarget(state.SourceWshoto, "bench", shanghai)
				job := &source.WshotoJob{Client: client, TagIDs: ids, Location: shanghai, LookbackDays: 7, Target: t, Logger: slog.New(slog.DiscardHandler)}
				if _, err := job.Refresh(context.Background()); err != nil {
					b.Fatal(err)
				}
				close(stop)
				if top := <-sampled; top > base {
					peak = max(peak, top-base)
				}
				if got := len(t.Snapshot().Wshoto.Records); got != n {
					b.Fatalf("%d records", got)
				}
			}
			b.StopTimer()
			calls := f.CallCount(wshoto.AnalyzePath)
			b.ReportMetric(float64(calls)/float64(b.N), "calls/refresh")
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(peak)/(1<<20)/(float64(n)/1000), "peak-MiB/1k-tags")
		})
	}
}

// heapBytes is the live heap right now.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
