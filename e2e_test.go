package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/dashboards"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// startE2EFakes starts both fakes on loopback ports and writes a config
// reading them (all demo tags, every retain kind) into a temporary dir.
func startE2EFakes(t *testing.T) (ws *wshototest.Server, wc *wechattest.Server, dir, cfgFile string) {
	t.Helper()
	ws = wshototest.New("e2e-appid", "e2e-secret-1")
	wsSrv := ws.Start()
	t.Cleanup(wsSrv.Close)
	wc = wechattest.New("wxe2e0123456789abc", "e2e-secret-2")
	wcSrv := wc.Start()
	t.Cleanup(wcSrv.Close)
	dir = t.TempDir()
	var ids []string
	for _, tag := range wshototest.DemoTags {
		ids = append(ids, strconv.Quote(tag.ID))
	}
	cfgFile = filepath.Join(dir, "exporter.yml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(e2eConfig, wsSrv.URL, strings.Join(ids, ", "), wcSrv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return ws, wc, dir, cfgFile
}

// The shipped rules files pass promtool's checks and their unit tests.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	runPromtool(t, "check", "rules", "rules/alerts.yml")
	runPromtool(t, "test", "rules", "rules/alerts_test.yml", "rules/alerts_weekly_test.yml")
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

const e2eConfig = `global:
  timezone: Asia/Shanghai
wshoto:
  - name: e2e-corp
    base_url: %s
    appid: e2e-appid
    app_secret: e2e-secret-1
    tag_ids: [%s]
wechat_miniprogram:
  - name: e2e-shop
    base_url: %s
    appid: wxe2e0123456789abc
    secret: e2e-secret-2
    retain: [daily, weekly, monthly]
`

// A real Prometheus scrapes the exporter, which reads the fakes on loopback
// ports. Every variable and panel query of every dashboard returns data,
// and every rule evaluates without error and without firing on healthy
// data.
func TestEndToEndWithPrometheus(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus is not installed (Debian package prometheus; .ci/run installs it)")
	}
	ws, wc, dir, cfgFile := startE2EFakes(t)
	// Slow token answers make the first refresh land after Prometheus has
	// scraped the zero counters, so rates and latency have points.
	ws.Inject(wshoto.TokenPath, upstreamtest.Fault{Delay: 4 * time.Second})
	wc.Inject(wechat.StableTokenPath, upstreamtest.Fault{Delay: 4 * time.Second})

	// Prometheus first, so that it scrapes the exporter from its start.
	expAddr := freeAddr(t)
	prom := startPrometheus(t, dir, expAddr)
	// Prometheus applies new targets every 5 s: wait for its first
	// (failed) scrape, so the exporter is scraped from its first second.
	prom.waitForData(t, `up{job="wechat_retention_exporter"}`, 30*time.Second)
	began := time.Now()
	startAt(t, expAddr, "--config.file="+cfgFile)
	for _, q := range []string{
		`wshoto_group_customers`, `wechat_miniprogram_weekly_retain_users`, `wechat_miniprogram_daily_retain_ratio`,
		`wechat_miniprogram_monthly_retain_users`, `wechat_retention_exporter_upstream_requests_total{code="0"} > 0`,
	} {
		prom.waitForData(t, q, 30*time.Second)
	}
	// A few more scrapes after the refresh, and a rule evaluation.
	time.Sleep(3 * time.Second)

	entries, _ := dashboards.Files.ReadDir(".")
	for _, e := range entries {
		raw, _ := dashboards.Files.ReadFile(e.Name())
		t.Run(e.Name(), func(t *testing.T) { prom.checkDashboard(t, raw, began) })
	}
	prom.checkRules(t)
}

type prometheusProc struct {
	url string
	cmd *exec.Cmd
}

func startPrometheus(t *testing.T, dir, target string) *prometheusProc {
	t.Helper()
	rules, _ := filepath.Abs("rules/alerts.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: wechat_retention_exporter
    static_configs:
      - targets: [%q]
`, rules, target)
	return startPrometheusOn(t, dir, cfg)
}

// startPrometheusOn starts Prometheus with cfg and its storage in dir/data.
func startPrometheusOn(t *testing.T, dir, cfg string, flags ...string) *prometheusProc {
	t.Helper()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	_ = os.WriteFile(cfgFile, []byte(cfg), 0o600)
	addr := freeAddr(t)
	logs := &syncBuffer{}
	cmd := exec.Command("prometheus", append([]string{"--config.file=" + cfgFile, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, flags...)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	p := &prometheusProc{url: "http://" + addr, cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiResult is the data of a Prometheus HTTP API answer.
type apiResult struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
		Values [][]any           `json:"values"`
	} `json:"result"`
}

func (p *prometheusProc) api(path string, params url.Values, out any) error {
	resp, err := http.Get(p.url + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// samples counts the non-NaN values of a query or range query result.
func (r *apiResult) samples() int {
	n := 0
	number := func(v []any) bool {
		if len(v) != 2 {
			return false
		}
		s, _ := v[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && !math.IsNaN(f)
	}
	for _, s := range r.Result {
		if number(s.Value) {
			n++
		}
		for _, v := range s.Values {
			if number(v) {
				n++
			}
		}
	}
	return n
}

func (p *prometheusProc) waitForData(t *testing.T, q string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var r apiResult
		err := p.api("/api/v1/query", url.Values{"query": {q}}, &r)
		if err == nil && r.samples() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no data for %s after %s (%v)", q, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var labelValuesRE = regexp.MustCompile(`^label_values\((?:(.*),\s*)?(\w+)\)$`)

// checkDashboard resolves the variables of a dashboard as Grafana would,
// then runs every panel query: instant ones now, range ones since began.
func (p *prometheusProc) checkDashboard(t *testing.T, raw []byte, began time.Time) {
	var d struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
				Query      any    `json:"query"`
				Multi      bool   `json:"multi"`
			} `json:"list"`
		} `json:"templating"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		var values []string
		switch v.Type {
		case "datasource":
			continue
		case "custom":
			values = strings.Split(v.Query.(string), ",")
		case "query":
			m := labelValuesRE.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Fatalf("variable %s: unsupported query %q", v.Name, v.Definition)
			}
			params := url.Values{}
			if m[1] != "" {
				params.Set("match[]", substitute(m[1], vars, ""))
			}
			if err := p.api("/api/v1/label/"+m[2]+"/values", params, &values); err != nil {
				t.Fatalf("variable %s: %v", v.Name, err)
			}
		default:
			t.Fatalf("variable %s: unsupported type %s", v.Name, v.Type)
		}
		if len(values) == 0 {
			t.Fatalf("variable %s (%s) has no values", v.Name, v.Definition)
		}
		if v.Multi { // "All", as Grafana sends it: an escaped alternation
			var esc []string
			for _, s := range values {
				esc = append(esc, strings.ReplaceAll(regexp.QuoteMeta(s), `\`, `\\`))
			}
			vars[v.Name] = "(" + strings.Join(esc, "|") + ")"
		} else {
			vars[v.Name] = values[0]
		}
	}
	t.Logf("variables: %v", vars)

	type panel struct {
		Title    string            `json:"title"`
		Type     string            `json:"type"`
		Interval string            `json:"interval"`
		Panels   []json.RawMessage `json:"panels"`
		Targets  []struct {
			Expr    string `json:"expr"`
			Instant bool   `json:"instant"`
		} `json:"targets"`
	}
	queries := 0
	var walk func([]json.RawMessage)
	walk = func(raws []json.RawMessage) {
		for _, r := range raws {
			var pl panel
			_ = json.Unmarshal(r, &pl)
			walk(pl.Panels)
			for _, tg := range pl.Targets {
				queries++
				expr := substitute(tg.Expr, vars, pl.Interval)
				var res apiResult
				var err error
				if tg.Instant {
					err = p.api("/api/v1/query", url.Values{"query": {expr}}, &res)
				} else {
					now := time.Now()
					err = p.api("/api/v1/query_range", url.Values{"query": {expr},
						"start": {strconv.FormatInt(began.Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}, "step": {"1"}}, &res)
				}
				switch {
				case err != nil:
					t.Errorf("panel %q: %s: %v", pl.Title, expr, err)
				case res.samples() == 0:
					t.Errorf("panel %q: no data for %s", pl.Title, expr)
				}
			}
		}
	}
	walk(d.Panels)
	t.Logf("%d panel queries run", queries)
}

// substitute replaces dashboard variables and Grafana's interval macros.
func substitute(expr string, vars map[string]string, interval string) string {
	if interval == "" {
		interval = "1m"
	}
	all := map[string]string{"__interval": interval, "__rate_interval": interval, "__range": "1h"}
	for k, v := range vars {
		all[k] = v
	}
	names := slices.Collect(maps.Keys(all))
	// Longest first, so $target is not read as $tag followed by "et".
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	for _, n := range names {
		expr = strings.ReplaceAll(expr, "${"+n+"}", all[n])
		expr = strings.ReplaceAll(expr, "$"+n, all[n])
	}
	return expr
}

// checkRules asks Prometheus how the loaded rules fared: every rule
// evaluated without error, no alert is pending or firing on healthy data,
// and every expression runs as a query.
func (p *prometheusProc) checkRules(t *testing.T) {
	var r struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Query     string `json:"query"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
				Alerts    []any  `json:"alerts"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("/api/v1/rules", nil, &r); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health != "ok" {
				t.Errorf("rule %s: health %q %s", rule.Name, rule.Health, rule.LastError)
			}
			if rule.State != "" && rule.State != "inactive" {
				t.Errorf("alert %s is %s on healthy data: %v", rule.Name, rule.State, rule.Alerts)
			}
			var res apiResult
			if err := p.api("/api/v1/query", url.Values{"query": {rule.Query}}, &res); err != nil {
				t.Errorf("rule %s: %v", rule.Name, err)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no rules")
	}
	t.Logf("%d rules evaluated", n)
}

// Sixty days of history from the fakes, written by backfill, imported with
// promtool and queried from a Prometheus started on the blocks: at noon of
// any day D+1, last_over_time(...[1d]) is the upstream's value for day D,
// and at noon of a Monday, last_over_time(...[7d]) of weekly key k is the
// value of the cohort k weeks before the week that just ended.
func TestBackfillIntoPrometheus(t *testing.T) {
	t.Parallel()
	ws, wc, dir, cfgFile := startE2EFakes(t)

	loc := ws.Location
	end := calendar.LatestDailyDate(time.Now(), loc)
	start := end.AddDays(-59)
	file := filepath.Join(dir, "history.om")
	cmd := exec.Command(binary, "backfill", "--config.file="+cfgFile, "--start="+start.String(), "--end="+end.String(), "--output="+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	t.Logf("backfill:\n%s", grep(string(out), "written|calls|wrote"))
	if out, err := exec.Command("promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", file, filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	prom := startPrometheusOn(t, dir, "global: {}\n", "--storage.tsdb.retention.time=10y")

	query := func(q string, at time.Time) float64 {
		t.Helper()
		var r apiResult
		if err := prom.api("/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatInt(at.Unix(), 10)}}, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Result) != 1 {
			t.Fatalf("%s at %s: %d series", q, at, len(r.Result))
		}
		v, _ := strconv.ParseFloat(r.Result[0].Value[1].(string), 64)
		return v
	}
	tag := wshototest.DemoTags[2]
	for _, d := range []calendar.Date{start, start.AddDays(17), end.AddDays(-1), end} {
		noon := d.AddDays(1).Start(loc).Add(12 * time.Hour)
		want := float64(wshototest.DemoRecord(tag, d)["total_customer_cnt"].(int64))
		if got := query(fmt.Sprintf(`last_over_time(wshoto_group_customers{corp="e2e-corp",tag_id=%q}[1d])`, tag.ID), noon); got != want {
			t.Errorf("day %s: customers %v at noon the day after, want %v", d, got, want)
		}
		if got := query(`last_over_time(wshoto_group_stats_date_timestamp_seconds{corp="e2e-corp"}[1d])`, noon); got != float64(d.Start(loc).Unix()) {
			t.Errorf("day %s: date gauge %v", d, got)
		}
	}
	mondays := 0
	for d := start.AddDays(7); !d.After(end); d = d.AddDays(1) {
		if d.Weekday() != time.Monday {
			continue
		}
		mondays++
		week := calendar.Week.Add(d, -1) // the week that just ended
		noon := d.Start(loc).Add(12 * time.Hour)
		for _, key := range []int{0, 2, 4} {
			cohort := calendar.Week.Add(week, -key)
			want := wechattest.DemoValue(wc.AppID, wechat.Weekly, cohort, key, false)
			if got := query(fmt.Sprintf(`last_over_time(wechat_miniprogram_weekly_retain_users{app="e2e-shop",cohort="new",key="%d"}[7d])`, key), noon); got != want {
				t.Errorf("Monday %s key %d: %v, want %v (cohort %s)", d, key, got, want, cohort)
			}
		}
	}
	if mondays < 7 {
		t.Errorf("only %d Mondays checked", mondays)
	}
}
