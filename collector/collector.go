// Package collector turns the targets' snapshots and counters into
// Prometheus metrics. It builds const metrics at collect time from what
// state holds and never calls an upstream.
package collector

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

const selfPrefix = "wechat_retention_exporter_"

var (
	wshotoLabels = []string{"corp", "tag_id", "tag_name"}
	retainLabels = []string{"app", "appid", "cohort", "key"}
	selfLabels   = []string{"source", "target"}
)

// retainDescs are the three metrics of one retain kind.
type retainDescs struct {
	users, ratio, cohortStart *prometheus.Desc
}

func newRetainDescs(kind, period string) retainDescs {
	prefix := "wechat_miniprogram_" + kind + "_retain_"
	return retainDescs{
		users: gauge(prefix+"users",
			"Mini-program users of the "+period+" cohort: key 0 is the cohort's users (new or active), key k the users still visiting k "+period+"s later, from the newest cohort that has key k.", retainLabels...),
		ratio: gauge(prefix+"ratio",
			"Key-k users divided by key-0 users of the same "+period+" cohort, 0-1.", retainLabels...),
		cohortStart: gauge(prefix+"cohort_start_timestamp_seconds",
			"Start (00:00 in the configured time zone) of the "+period+" cohort each key's values come from.", "app", "appid", "key"),
	}
}

func gauge(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Exporter collects every live target of a state.Set: its data (values
// from the snapshots), its own health series, or both.
type Exporter struct {
	set        *state.Set
	data, self bool

	wshotoCounts    [6]*prometheus.Desc
	wshotoRetention *prometheus.Desc
	wshotoDate      *prometheus.Desc
	retain          [3]retainDescs // by wechat.Kind

	lastSuccess     *prometheus.Desc
	lastSuccessTime *prometheus.Desc
	refreshErrors   *prometheus.Desc
	requests        *prometheus.Desc
	latency         *prometheus.Desc
	tokenRefreshes  *prometheus.Desc
}

var _ prometheus.Collector = (*Exporter)(nil)

// New returns a collector of the data and the health series of set.
func New(set *state.Set) *Exporter { return newExporter(set, true, true) }

// NewData returns a collector of the data only: it changes only when a
// snapshot is swapped, so its encoding can be cached.
func NewData(set *state.Set) *Exporter { return newExporter(set, true, false) }

// NewSelf returns a collector of the per-target health series only.
func NewSelf(set *state.Set) *Exporter { return newExporter(set, false, true) }

func newExporter(set *state.Set, data, self bool) *Exporter {
	return &Exporter{
		set: set, data: data, self: self,
		wshotoCounts: [6]*prometheus.Desc{
			gauge("wshoto_group_customers", "Customers in the groups with the tag (total_customer_cnt, 群客户总数), as reported for the data day.", wshotoLabels...),
			gauge("wshoto_group_distinct_customers", "Distinct customers in the groups with the tag (total_distinct_customer_cnt), as reported for the data day.", wshotoLabels...),
			gauge("wshoto_group_joined_customers", "Customers who joined groups with the tag, as the upstream accumulates them (total_new_customer_cnt, 累计入群客户数), reported for the data day.", wshotoLabels...),
			gauge("wshoto_group_distinct_joined_customers", "Distinct customers who joined groups with the tag, as the upstream accumulates them (total_distinct_new_customer_cnt), reported for the data day.", wshotoLabels...),
			gauge("wshoto_group_left_customers", "Customers who left groups with the tag, as the upstream accumulates them (total_loss_customer_cnt, 累计退群客户数), reported for the data day.", wshotoLabels...),
			gauge("wshoto_group_distinct_left_customers", "Distinct customers who left groups with the tag, as the upstream accumulates them (total_distinct_loss_customer_cnt), reported for the data day.", wshotoLabels...),
		},
		wshotoRetention: gauge("wshoto_group_customer_retention_ratio",
			"Share of group customers retained after the window (24h, 7d, 15d, 30d, all), 0-1, on the data day.", append(wshotoLabels[:3:3], "window")...),
		wshotoDate: gauge("wshoto_group_stats_date_timestamp_seconds",
			"Data day of the wshoto values served, as 00:00 of that day in the configured time zone.", "corp"),

		retain: [3]retainDescs{
			wechat.Daily:   newRetainDescs("daily", "day"),
			wechat.Weekly:  newRetainDescs("weekly", "week"),
			wechat.Monthly: newRetainDescs("monthly", "month"),
		},

		lastSuccess: gauge(selfPrefix+"last_refresh_success",
			"1 if the target's last refresh succeeded, 0 if it failed.", selfLabels...),
		lastSuccessTime: gauge(selfPrefix+"last_refresh_success_timestamp_seconds",
			"Unix time of the target's last successful refresh.", selfLabels...),
		refreshErrors: prometheus.NewDesc(selfPrefix+"refresh_errors_total",
			"Failed refreshes of the target by cause.", append(selfLabels[:2:2], "reason"), nil),
		requests: prometheus.NewDesc(selfPrefix+"upstream_requests_total",
			"Upstream HTTP calls by endpoint and result code: the API's code (0 = success), http_NNN, network or invalid_response.",
			append(selfLabels[:2:2], "endpoint", "code"), nil),
		latency: prometheus.NewDesc(selfPrefix+"upstream_request_duration_seconds",
			"Duration of upstream HTTP calls, body read included.", append(selfLabels[:2:2], "endpoint"), nil),
		tokenRefreshes: prometheus.NewDesc(selfPrefix+"token_refreshes_total",
			"Access-token fetches by result (success, failure).", append(selfLabels[:2:2], "result"), nil),
	}
}

// Describe sends every descriptor of the parts collected; the set of
// metrics is fixed.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	var ds []*prometheus.Desc
	if e.data {
		ds = append(ds, e.wshotoCounts[:]...)
		for _, r := range e.retain {
			ds = append(ds, r.users, r.ratio, r.cohortStart)
		}
		ds = append(ds, e.wshotoRetention, e.wshotoDate)
	}
	if e.self {
		ds = append(ds, e.lastSuccess, e.lastSuccessTime, e.refreshErrors, e.requests, e.latency, e.tokenRefreshes)
	}
	for _, d := range ds {
		ch <- d
	}
}

// Collect reads each target's current snapshot and counters.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	for _, t := range e.set.Targets() {
		if e.self {
			e.collectSelf(ch, t)
		}
		if !e.data {
			continue
		}
		snap := t.Snapshot()
		switch {
		case snap == nil:
		case snap.Wshoto != nil:
			e.collectWshoto(ch, t.Name, snap.Wshoto)
		case snap.Miniprogram != nil:
			e.collectMiniprogram(ch, t.Name, snap.Miniprogram)
		}
	}
}

func (e *Exporter) collectSelf(ch chan<- prometheus.Metric, t *state.Target) {
	s := t.Stats()
	src, name := t.Source, t.Name
	if s.Attempted {
		ch <- prometheus.MustNewConstMetric(e.lastSuccess, prometheus.GaugeValue, boolValue(s.LastOK), src, name)
	}
	if !s.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(e.lastSuccessTime, prometheus.GaugeValue, unixSeconds(s.LastSuccess), src, name)
	}
	for reason, n := range s.Errors {
		ch <- prometheus.MustNewConstMetric(e.refreshErrors, prometheus.CounterValue, n, src, name, reason)
	}
	for k, n := range s.Requests {
		ch <- prometheus.MustNewConstMetric(e.requests, prometheus.CounterValue, n, src, name, k.Endpoint, k.Code)
	}
	for ep, h := range s.Latency {
		ch <- prometheus.MustNewConstHistogram(e.latency, h.Count, h.Sum, h.Buckets, src, name, ep)
	}
	for result, n := range s.Tokens {
		ch <- prometheus.MustNewConstMetric(e.tokenRefreshes, prometheus.CounterValue, n, src, name, result)
	}
}

func (e *Exporter) collectWshoto(ch chan<- prometheus.Metric, corp string, w *state.Wshoto) {
	ch <- prometheus.MustNewConstMetric(e.wshotoDate, prometheus.GaugeValue, unixSeconds(w.DateStart), corp)
	for i := range w.Records {
		r := &w.Records[i]
		counts := [6]wshoto.Number{r.Customers, r.DistinctCustomers, r.Joined, r.DistinctJoined, r.Left, r.DistinctLeft}
		for j, n := range counts {
			if n.Valid {
				ch <- prometheus.MustNewConstMetric(e.wshotoCounts[j], prometheus.GaugeValue, n.Value, corp, r.TagID, r.TagName)
			}
		}
		for j, n := range r.Retention {
			if n.Valid {
				ch <- prometheus.MustNewConstMetric(e.wshotoRetention, prometheus.GaugeValue, n.Value, corp, r.TagID, r.TagName, wshoto.RetentionWindows[j])
			}
		}
	}
}

func (e *Exporter) collectMiniprogram(ch chan<- prometheus.Metric, app string, m *state.Miniprogram) {
	for kind, keys := range m.Retain {
		d := e.retain[kind]
		for _, k := range keys {
			key := strconv.Itoa(k.Key)
			ch <- prometheus.MustNewConstMetric(d.cohortStart, prometheus.GaugeValue, unixSeconds(k.CohortStart), app, m.AppID, key)
			for _, c := range []struct {
				cohort     string
				val, ratio state.Value
			}{{"new", k.New, k.NewRatio}, {"active", k.Active, k.ActiveRatio}} {
				if c.val.Valid {
					ch <- prometheus.MustNewConstMetric(d.users, prometheus.GaugeValue, c.val.V, app, m.AppID, c.cohort, key)
				}
				if c.ratio.Valid {
					ch <- prometheus.MustNewConstMetric(d.ratio, prometheus.GaugeValue, c.ratio.V, app, m.AppID, c.cohort, key)
				}
			}
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
