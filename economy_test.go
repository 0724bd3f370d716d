package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// publishedAt draws the publication delay of a day: normal around mean
// with a 30-minute deviation, clipped to mean ± 1 h; the same day always
// gets the same draw.
func publishedAt(mean time.Duration, salt string) func(calendar.Date) time.Duration {
	return func(d calendar.Date) time.Duration {
		h := fnv.New64a()
		fmt.Fprint(h, salt, d)
		rng := rand.New(rand.NewPCG(h.Sum64(), 1))
		dev := time.Duration(rng.NormFloat64() * float64(30*time.Minute))
		return mean + max(-time.Hour, min(time.Hour, dev))
	}
}

const economyConfig = `
global: {timezone: Asia/Shanghai}
wshoto:
  - {name: acme, base_url: "http://wshoto.test", appid: wsappid, app_secret: s1, tag_ids: [%s]}
wechat_miniprogram:
  - {name: shop, base_url: "http://weekly.test", appid: wx0000000000000001, secret: s2}
  - {name: shopd, base_url: "http://daily.test", appid: wx0000000000000002, secret: s3, retain: [daily]}
`

type economyTarget struct {
	name, host string
	target     *state.Target
	// newest returns the newest period served and when it was published.
	newest func(s *state.Snapshot) (calendar.Date, bool)
	pubOf  func(d calendar.Date) time.Time
	lags   []time.Duration
	seen   calendar.Date
}

// TestUpstreamEconomy runs the exporter for 28 simulated days against
// fakes that publish each day at a time drawn around 02:00 (wshoto) and
// 09:30 (WeChat), and reports per target-day the upstream calls (tokens
// included) and the lag from publication to the data being served. After
// a week of learning: at most 8 calls per target-day on average for wshoto
// and weekly retain, and a lag p95 within 15 minutes for every target.
func TestUpstreamEconomy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loc, _ := time.LoadLocation("Asia/Shanghai")
		time.Sleep(time.Until(shanghaiAt("2000-01-03 12:00"))) // a Monday
		ws := wshototest.New("wsappid", "s1")
		ws.PublishDelayOn = publishedAt(2*time.Hour, "wshoto")
		weekly := wechattest.New("wx0000000000000001", "s2")
		weekly.PublishDelayOn = publishedAt(9*time.Hour+30*time.Minute, "weekly")
		daily := wechattest.New("wx0000000000000002", "s3")
		daily.PublishDelayOn = publishedAt(9*time.Hour+30*time.Minute, "daily")
		w := &wire{hosts: map[string]http.RoundTripper{
			"wshoto.test": upstreamtest.Client(ws).Transport,
			"weekly.test": upstreamtest.Client(weekly).Transport,
			"daily.test":  upstreamtest.Client(daily).Transport,
		}, refused: map[string]bool{}, attempts: map[string]int{}}
		cfg := fmt.Sprintf(economyConfig, rigTagIDs())
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := newServer(ctx, slog.New(slog.DiscardHandler), func() (*config.Config, error) { return config.Parse("economy.yml", []byte(cfg)) },
			source.Deps{HTTPClient: func(string) *http.Client { return &http.Client{Transport: w, Timeout: 30 * time.Second} },
				Publications: &scheduler.Store{}})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); srv.manager.Stop() }()

		day := func(s *state.Snapshot, k wechat.Kind) (calendar.Date, bool) {
			if s == nil || s.Miniprogram == nil || len(s.Miniprogram.Retain[k]) == 0 {
				return calendar.Date{}, false
			}
			return calendar.DateOf(s.Miniprogram.Retain[k][0].CohortStart, loc), true
		}
		targets := []*economyTarget{
			{name: "wshoto (daily, 5 tags)", host: "wshoto.test", target: srv.set.Get("wshoto", "acme"),
				newest: func(s *state.Snapshot) (calendar.Date, bool) {
					if s == nil || s.Wshoto == nil {
						return calendar.Date{}, false
					}
					return s.Wshoto.Date, true
				},
				pubOf: func(d calendar.Date) time.Time { nd := d.AddDays(1); return nd.Start(loc).Add(ws.PublishDelayOn(nd)) }},
			{name: "WeChat weekly retain", host: "weekly.test", target: srv.set.Get("wechat_miniprogram", "shop"),
				newest: func(s *state.Snapshot) (calendar.Date, bool) { return day(s, wechat.Weekly) },
				pubOf: func(d calendar.Date) time.Time {
					nd := d.AddDays(7)
					return nd.Start(loc).Add(weekly.PublishDelayOn(nd))
				}},
			{name: "WeChat daily retain", host: "daily.test", target: srv.set.Get("wechat_miniprogram", "shopd"),
				newest: func(s *state.Snapshot) (calendar.Date, bool) { return day(s, wechat.Daily) },
				pubOf: func(d calendar.Date) time.Time {
					nd := d.AddDays(1)
					return nd.Start(loc).Add(daily.PublishDelayOn(nd))
				}},
		}
		const days, warmup = 28, 7
		began := shanghaiAt("2000-01-04 00:00")
		time.Sleep(time.Until(began))
		synctest.Wait()
		for _, et := range targets {
			et.seen, _ = et.newest(et.target.Snapshot())
		}
		calls := map[string][]int{}
		for d := range days {
			before := map[string]int{}
			for _, et := range targets {
				before[et.host] = w.count(et.host)
			}
			for range 24 * 60 {
				time.Sleep(time.Minute)
				synctest.Wait()
				for _, et := range targets {
					if got, ok := et.newest(et.target.Snapshot()); ok && got.After(et.seen) {
						et.seen = got
						if d >= warmup {
							et.lags = append(et.lags, time.Since(et.pubOf(got)))
						}
					}
				}
			}
			if d >= warmup {
				for _, et := range targets {
					calls[et.host] = append(calls[et.host], w.count(et.host)-before[et.host])
				}
			}
		}
		var table strings.Builder
		fmt.Fprintf(&table, "upstream economy, days %d-%d of %d (publication ~N(mean, 30 min) clipped to ±1 h):\n", warmup+1, days, days)
		fmt.Fprintf(&table, "| target | calls/day mean | calls/day max | publications | lag p50 | lag p95 | lag max |\n|---|---|---|---|---|---|---|\n")
		for _, et := range targets {
			c := calls[et.host]
			mean := float64(sum(c)) / float64(len(c))
			p50, p95, mx := quantile(et.lags, 0.5), quantile(et.lags, 0.95), quantile(et.lags, 1)
			fmt.Fprintf(&table, "| %s | %.1f | %d | %d | %s | %s | %s |\n", et.name, mean, slices.Max(c), len(et.lags),
				p50.Round(time.Second), p95.Round(time.Second), mx.Round(time.Second))
			if len(et.lags) == 0 {
				t.Errorf("%s: nothing published was ever served", et.name)
				continue
			}
			if p95 > 15*time.Minute {
				t.Errorf("%s: lag p95 %s, want ≤ 15m", et.name, p95)
			}
			if et.host != "daily.test" && mean > 8 {
				t.Errorf("%s: %.1f calls per day, want ≤ 8", et.name, mean)
			}
		}
		t.Log(table.String())
		fmt.Println(table.String()) // make bench prints it
	})
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// quantile returns the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
