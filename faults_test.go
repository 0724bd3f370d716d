package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// Secrets of the in-process rigs; no output may ever hold them.
const (
	rigWshotoSecret = "ws-secret-value-4711"
	rigWechatSecret = "mp-secret-value-0815"
	rigWechatAppID  = "wx0123456789abcdef"
)

const rigConfig = `
global: {timezone: Asia/Shanghai}
wshoto:
  - name: acme
    base_url: http://wshoto.test
    appid: wsappid
    app_secret: %s
    tag_ids: [%s]
    page_size: 2
wechat_miniprogram:
  - name: shop
    base_url: http://wechat.test
    appid: ` + rigWechatAppID + `
    secret: %s
    retain: [weekly]
`

func rigTagIDs() string {
	var ids []string
	for _, t := range wshototest.DemoTags {
		ids = append(ids, t.ID)
	}
	return strings.Join(ids, ", ")
}

// wire is the network between an in-process exporter and its fakes: it
// routes by host, can refuse connections, counts attempts per path, and
// can rewrite answers (the faults a fake cannot express by itself).
type wire struct {
	mu       sync.Mutex
	hosts    map[string]http.RoundTripper
	refused  map[string]bool
	attempts map[string]int // by host
	// rewrite, when set, changes the body answered to a request; page is
	// the wshoto current_index (0 for other calls).
	rewrite func(path string, page int, body []byte) []byte
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	w.mu.Lock()
	w.attempts[req.URL.Host]++
	refused, rewrite, rt := w.refused[req.URL.Host], w.rewrite, w.hosts[req.URL.Host]
	w.mu.Unlock()
	if refused {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	page := 0
	if req.Body != nil && req.URL.Path == wshoto.AnalyzePath {
		b, _ := io.ReadAll(req.Body)
		var r struct {
			CurrentIndex int `json:"current_index"`
		}
		_ = json.Unmarshal(b, &r)
		page = r.CurrentIndex
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := rt.RoundTrip(req)
	if err != nil || rewrite == nil {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	b = rewrite(req.URL.Path, page, b)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	return resp, nil
}

func (w *wire) set(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
}

func (w *wire) count(host string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.attempts[host]
}

// rig is an exporter built in process (so it runs in a synctest bubble)
// against both fakes.
type rig struct {
	ws     *wshototest.Server
	mp     *wechattest.Server
	wire   *wire
	srv    *server
	cancel context.CancelFunc
	logs   *syncBuffer
	h      http.Handler
	cfg    string // the configuration text load returns
	cfgMu  sync.Mutex
}

// newRig starts an exporter on fresh fakes; prepare, if any, runs before
// the first refresh.
func newRig(t *testing.T, prepare ...func(*rig)) *rig {
	t.Helper()
	r := &rig{
		ws:   wshototest.New("wsappid", rigWshotoSecret),
		mp:   wechattest.New(rigWechatAppID, rigWechatSecret),
		logs: &syncBuffer{},
		cfg:  fmt.Sprintf(rigConfig, rigWshotoSecret, rigTagIDs(), rigWechatSecret),
	}
	r.wire = &wire{
		hosts: map[string]http.RoundTripper{
			"wshoto.test": upstreamtest.Client(r.ws).Transport,
			"wechat.test": upstreamtest.Client(r.mp).Transport,
		},
		refused: map[string]bool{}, attempts: map[string]int{},
	}
	for _, p := range prepare {
		p(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	load := func() (*config.Config, error) {
		r.cfgMu.Lock()
		defer r.cfgMu.Unlock()
		return config.Parse("rig.yml", []byte(r.cfg))
	}
	deps := source.Deps{
		HTTPClient: func(string) *http.Client {
			return &http.Client{Transport: r.wire, Timeout: 30 * time.Second}
		},
		// The default policy with a seeded jitter: call counts repeat.
		Policy: func(poll time.Duration) scheduler.Policy {
			p := scheduler.DefaultPolicy(poll)
			p.Rand = rand.New(rand.NewPCG(1, 2)).Float64
			return p
		},
	}
	srv, err := newServer(ctx, logger, load, deps)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	r.h = srv.handler("/metrics", 40)
	return r
}

func (r *rig) setConfig(s string) {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	r.cfg = s
}

func (r *rig) stop() {
	r.cancel()
	r.srv.manager.Stop()
}

func (r *rig) get(t *testing.T, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// scrape returns /metrics, failing the test on anything but a 200.
func (r *rig) scrape(t *testing.T) string {
	t.Helper()
	code, body := r.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d:\n%s", code, body)
	}
	return body
}

// lines returns the sample lines of body that start with one of prefixes.
func lines(body string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// sourcePrefix is where each source's data series start.
var sourcePrefix = map[string]string{"wshoto": "wshoto_", "wechat_miniprogram": "wechat_miniprogram_"}

// value returns the value of the sample line that starts with series.
func value(body, series string) string {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			return rest
		}
	}
	return "absent"
}

// shanghaiAt is a moment of the synctest clock, which starts Saturday
// 2000-01-01 08:00 in Shanghai.
func shanghaiAt(s string) time.Time {
	loc, _ := time.LoadLocation("Asia/Shanghai")
	t, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		panic(err)
	}
	return t
}

type faultCase struct {
	name     string
	source   string // the source the fault hits
	host     string // the host whose calls (tokens included) are counted
	apply    func(r *rig)
	absorbed bool   // the exporter gets the right data despite the fault
	reason   string // refresh_errors_total reason counted
	endpoint string // upstream_requests_total endpoint and code counted
	code     string
	maxCalls int           // calls to path allowed during the three faulty hours
	recover  time.Duration // from healing to correct values
}

const (
	wsSrc = "wshoto"
	mpSrc = "wechat_miniprogram"
)

func faultCases() []faultCase {
	weekly := wechat.Weekly.Endpoint()
	ws := func(name string, f upstreamtest.Fault, reason, code string) faultCase {
		return faultCase{name: name, source: wsSrc, host: "wshoto.test", reason: reason, endpoint: wshoto.AnalyzeEndpoint, code: code,
			apply: func(r *rig) { r.ws.Break(wshoto.AnalyzePath, f) }}
	}
	mp := func(name string, f upstreamtest.Fault, reason, code string) faultCase {
		return faultCase{name: name, source: mpSrc, host: "wechat.test", reason: reason, endpoint: weekly, code: code,
			apply: func(r *rig) { r.mp.Break(wechat.WeeklyPath, f) }}
	}
	rewrite := func(c faultCase, f func(path string, page int, body []byte) []byte) faultCase {
		c.apply = func(r *rig) { r.wire.set(func() { r.wire.rewrite = f }) }
		return c
	}
	editPage := func(edit func(page int, m map[string]any)) func(string, int, []byte) []byte {
		return func(path string, page int, b []byte) []byte {
			if path != wshoto.AnalyzePath {
				return b
			}
			var m map[string]any
			if json.Unmarshal(b, &m) != nil || m["data"] == nil {
				return b
			}
			edit(page, m["data"].(map[string]any))
			out, _ := json.Marshal(m)
			return out
		}
	}
	var firstOfPage1 any
	cases := []faultCase{
		ws("wshoto 502 burst", upstreamtest.Fault{Status: 502}, "http_status", "http_502"),
		mp("wechat 503 burst", upstreamtest.Fault{Status: 503}, "http_status", "http_503"),
		ws("wshoto answer slower than the timeout", upstreamtest.Fault{Delay: 31 * time.Second}, "timeout", "network"),
		mp("wechat hangs", upstreamtest.Fault{Delay: time.Hour}, "timeout", "network"),
		{name: "wshoto connection refused", source: wsSrc, host: "wshoto.test", reason: "network", endpoint: wshoto.TokenEndpoint, code: "network",
			apply: func(r *rig) { r.wire.set(func() { r.wire.refused["wshoto.test"] = true }) }},
		ws("wshoto malformed JSON", upstreamtest.Fault{Body: `{"code":0,"data":{"total":`}, "invalid_response", "invalid_response"),
		mp("wechat HTML page with status 200", upstreamtest.Fault{Body: "<html><body>系统维护中</body></html>"}, "invalid_response", "invalid_response"),
		mp("wechat body larger than 8 MiB", upstreamtest.Fault{Body: `{"ref_date":"` + strings.Repeat("x", 9<<20) + `"}`}, "invalid_response", "invalid_response"),
		rewrite(faultCase{name: "wshoto truncated body", source: wsSrc, host: "wshoto.test", reason: "invalid_response", endpoint: wshoto.AnalyzeEndpoint, code: "invalid_response"},
			func(path string, _ int, b []byte) []byte {
				if path == wshoto.AnalyzePath {
					return b[:len(b)/2]
				}
				return b
			}),
		rewrite(faultCase{name: "wshoto numbers as strings", source: wsSrc, host: "wshoto.test", absorbed: true},
			editPage(func(_ int, d map[string]any) {
				for _, rec := range d["records"].([]any) {
					for k, v := range rec.(map[string]any) {
						if f, ok := v.(float64); ok {
							rec.(map[string]any)[k] = fmt.Sprint(f)
						}
					}
				}
			})),
		rewrite(faultCase{name: "wshoto wrong type (array for a count)", source: wsSrc, host: "wshoto.test", reason: "invalid_response", endpoint: wshoto.AnalyzeEndpoint, code: "invalid_response"},
			editPage(func(_ int, d map[string]any) {
				for _, rec := range d["records"].([]any) {
					rec.(map[string]any)["total_customer_cnt"] = []int{1}
				}
			})),
		rewrite(faultCase{name: "wshoto null records", source: wsSrc, host: "wshoto.test", reason: "invalid_response", endpoint: wshoto.AnalyzeEndpoint, code: "0"},
			editPage(func(_ int, d map[string]any) { d["records"] = nil })),
		rewrite(faultCase{name: "wechat null visit_uv", source: mpSrc, host: "wechat.test", reason: "invalid_response", endpoint: weekly, code: "invalid_response"},
			func(path string, _ int, b []byte) []byte {
				if path == wechat.WeeklyPath {
					return bytes.Replace(b, []byte(`"visit_uv":[`), []byte(`"visit_uv":null,"x":[`), 1)
				}
				return b
			}),
		rewrite(faultCase{name: "wshoto total changes between pages", source: wsSrc, host: "wshoto.test", reason: "invalid_response", endpoint: wshoto.AnalyzeEndpoint, code: "0", maxCalls: 40},
			editPage(func(page int, d map[string]any) {
				if page == 2 {
					d["total"] = d["total"].(float64) + 1
				}
			})),
		rewrite(faultCase{name: "wshoto duplicate record across pages", source: wsSrc, host: "wshoto.test", reason: "invalid_response", endpoint: wshoto.AnalyzeEndpoint, code: "0", maxCalls: 40},
			editPage(func(page int, d map[string]any) {
				recs := d["records"].([]any)
				switch {
				case page == 1 && len(recs) > 0:
					firstOfPage1 = recs[0]
				case page == 2 && len(recs) > 0 && firstOfPage1 != nil:
					recs[0] = firstOfPage1
				}
			})),
		{name: "wshoto token revoked between two pages", source: wsSrc, host: "wshoto.test", absorbed: true,
			apply: func(r *rig) {
				r.wire.set(func() {
					r.wire.rewrite = func(path string, page int, b []byte) []byte {
						if path == wshoto.AnalyzePath && page == 1 {
							r.ws.RevokeTokens()
						}
						return b
					}
				})
			}},
		{name: "wshoto token revoked before every call", source: wsSrc, host: "wshoto.test", reason: "token", endpoint: wshoto.AnalyzeEndpoint, code: "40014", maxCalls: 48,
			apply: func(r *rig) {
				r.ws.Chaos = func(string) upstreamtest.Fault { r.ws.RevokeTokens(); return upstreamtest.Fault{} }
			}},
		{name: "wshoto token endpoint 500", source: wsSrc, host: "wshoto.test", reason: "http_status", endpoint: wshoto.TokenEndpoint, code: "http_500",
			apply: func(r *rig) { r.ws.RevokeTokens(); r.ws.Break(wshoto.TokenPath, upstreamtest.Fault{Status: 500}) }},
		ws("wshoto unknown code 50123", upstreamtest.Fault{Code: 50123, Msg: "服务繁忙,请稍后再试"}, "api_error", "50123"),
		mp("wechat -1 system busy", upstreamtest.Fault{Code: -1, Msg: "system error"}, "api_error", "-1"),
		mp("wechat 45009 daily quota", upstreamtest.Fault{Code: 45009, Msg: "reach max api daily quota limit"}, "quota", "45009"),
		mp("wechat 45011 minute quota", upstreamtest.Fault{Code: 45011, Msg: "api minute-quota reach limit"}, "quota", "45011"),
		mp("wechat 40013 invalid appid", upstreamtest.Fault{Code: 40013, Msg: "invalid appid"}, "config", "40013"),
		mp("wechat 40164 IP not whitelisted", upstreamtest.Fault{Code: 40164, Msg: "invalid ip 203.0.113.9, not in whitelist"}, "config", "40164"),
		mp("wechat 48001 api unauthorized", upstreamtest.Fault{Code: 48001, Msg: "api unauthorized"}, "config", "48001"),
		mp("wechat 61501 date range", upstreamtest.Fault{Code: 61501, Msg: "date range error"}, "api_error", "61501"),
	}
	for i := range cases {
		c := &cases[i]
		if c.maxCalls == 0 {
			c.maxCalls = 20
		}
		if c.recover == 0 {
			c.recover = 35 * time.Minute
		}
		switch c.code {
		case "45009": // no call until the next midnight
			c.maxCalls, c.recover = 2, 14*time.Hour // a token and the call
		case "40013", "40164", "48001": // hourly
			c.maxCalls, c.recover = 5, 70*time.Minute
		case "http_502", "http_503", "network": // each call is tried 3 times (apicall.DefaultRetries)
			if c.reason != "timeout" {
				c.maxCalls = 45
			}
		}
	}
	return cases
}

// TestFaultMatrix plays each fault against a running exporter for three
// hours of fake time after new data became due, then heals it: the last
// good values stay served, the failure is counted with its reason and
// code, calls stay bounded, the log says why, recovery needs no help, and
// no goroutine outlives the exporter. A healthy twin fed by fault-free
// fakes gives the values to expect.
func TestFaultMatrix(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var summary []string
	for _, c := range faultCases() {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				time.Sleep(time.Until(shanghaiAt("2000-01-02 12:00"))) // Sunday noon
				r, twin := newRig(t), newRig(t)
				defer r.stop()
				defer twin.stop()
				synctest.Wait()
				prefix := sourcePrefix[c.source]
				target := map[string]string{wsSrc: "acme", mpSrc: "shop"}[c.source]
				successSeries := fmt.Sprintf(`wechat_retention_exporter_last_refresh_success{source=%q,target=%q}`, c.source, target)
				good := lines(r.scrape(t), prefix)
				if good == "" || good != lines(twin.scrape(t), prefix) {
					t.Fatalf("first refresh: no data, or not the twin's:\n%s", good)
				}

				c.apply(r)
				before := r.wire.count(c.host)
				// Three hours after new data is due: wshoto's day at 00:00,
				// WeChat's week from 08:00 (wechat.PublishNotBefore).
				time.Sleep(time.Until(map[string]time.Time{wsSrc: shanghaiAt("2000-01-03 03:00"), mpSrc: shanghaiAt("2000-01-03 11:00")}[c.source]))
				synctest.Wait()
				body := r.scrape(t)
				calls := r.wire.count(c.host) - before
				success := value(body, successSeries)
				outcome := "absorbed: new values served"
				if c.absorbed {
					if got, want := lines(body, prefix), lines(twin.scrape(t), prefix); got != want || success != "1" {
						t.Errorf("absorbed fault: success=%s, values differ from the twin:\n%s\n---\n%s", success, got, want)
					}
				} else {
					if got := lines(body, prefix); got != good {
						t.Errorf("the last good values were not kept:\n%s\n---\n%s", got, good)
					}
					if success != "0" {
						t.Errorf("last_refresh_success = %s, want 0", success)
					}
					errs := value(body, fmt.Sprintf(`wechat_retention_exporter_refresh_errors_total{reason=%q,source=%q,target=%q}`, c.reason, c.source, target))
					if errs == "0" || errs == "absent" {
						t.Errorf("refresh_errors_total{reason=%q} = %s\n%s", c.reason, errs, lines(body, "wechat_retention_exporter_refresh_errors_total"))
					}
					reqs := value(body, fmt.Sprintf(`wechat_retention_exporter_upstream_requests_total{code=%q,endpoint=%q,source=%q,target=%q}`, c.code, c.endpoint, c.source, target))
					if reqs == "0" || reqs == "absent" {
						t.Errorf("upstream_requests_total{endpoint=%q,code=%q} = %s\n%s", c.endpoint, c.code, reqs, lines(body, "wechat_retention_exporter_upstream_requests_total"))
					}
					if logs := r.logs.String(); !strings.Contains(logs, `msg="refresh failed"`) || !strings.Contains(logs, "reason="+c.reason) {
						t.Errorf("no warning with reason=%s in the log:\n%s", c.reason, logs)
					}
					outcome = fmt.Sprintf("kept last good; reason=%s code=%s", c.reason, c.code)
				}
				if calls < 1 || calls > c.maxCalls {
					t.Errorf("%d calls to %s in 3 faulty hours, want 1..%d", calls, c.host, c.maxCalls)
				}

				r.ws.Heal()
				r.mp.Heal()
				r.ws.Chaos = nil
				r.wire.set(func() { r.wire.rewrite, r.wire.refused = nil, map[string]bool{} })
				time.Sleep(c.recover)
				synctest.Wait()
				body = r.scrape(t)
				if got, want := lines(body, prefix), lines(twin.scrape(t), prefix); got != want {
					t.Errorf("not recovered %s after healing:\n%s\n---\n%s", c.recover, got, want)
				}
				if got := value(body, successSeries); got != "1" {
					t.Errorf("last_refresh_success = %s after recovery, want 1", got)
				}
				for _, s := range []string{rigWshotoSecret, rigWechatSecret} {
					if strings.Contains(r.logs.String(), s) || strings.Contains(body, s) {
						t.Errorf("secret %q in the log or /metrics", s)
					}
				}
				summary = append(summary, fmt.Sprintf("| %s | %s | %d | %s |", c.name, outcome, calls, c.recover))
			})
		})
	}
	t.Logf("fault matrix:\n| case | outcome during 3 h | calls | recovered within |\n|---|---|---|---|\n%s", strings.Join(summary, "\n"))
}
