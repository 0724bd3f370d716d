package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// dataAndHealth keeps the lines a scrape must repeat exactly: the data
// and the exporter's per-target series (not Go, process or promhttp ones).
func dataAndHealth(body string) string {
	return lines(body, "wshoto_", "wechat_miniprogram_", "wechat_retention_exporter_")
}

// With a gateway failing 30 % of all calls with 502, a fresh exporter
// serves exactly the healthy twin's values of both sources within two
// minutes, and no scrape meanwhile answers anything but 200.
func TestConvergesDespiteFlakyGateway(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(shanghaiAt("2000-01-03 09:00"))) // Monday: a new day and a new week are due
		flaky := func(seed uint64) func(string) upstreamtest.Fault {
			rng := rand.New(rand.NewPCG(seed, seed))
			return func(string) upstreamtest.Fault {
				if rng.Float64() < 0.3 {
					return upstreamtest.Fault{Status: http.StatusBadGateway}
				}
				return upstreamtest.Fault{}
			}
		}
		r := newRig(t, func(r *rig) { r.ws.Chaos, r.mp.Chaos = flaky(1), flaky(2) })
		twin := newRig(t)
		defer r.stop()
		defer twin.stop()
		var converged time.Duration
		began := time.Now()
		for time.Since(began) < 2*time.Minute {
			time.Sleep(15 * time.Second)
			synctest.Wait()
			body := r.scrape(t) // fails the test on anything but 200
			if converged == 0 && lines(body, "wshoto_", "wechat_miniprogram_") == lines(twin.scrape(t), "wshoto_", "wechat_miniprogram_") {
				converged = time.Since(began)
			}
		}
		if converged == 0 {
			t.Fatalf("not converged in 2 minutes:\n%s", lines(r.scrape(t), "wechat_retention_exporter_refresh_errors_total", "wechat_retention_exporter_last_refresh_success{"))
		}
		bad := 0
		for _, c := range append(r.ws.Calls(), r.mp.Calls()...) {
			if c.Answer == -http.StatusBadGateway {
				bad++
			}
		}
		t.Logf("converged within %s; %d calls, %d answered 502", converged, len(r.ws.Calls())+len(r.mp.Calls()), bad)
		if bad == 0 {
			t.Error("the gateway never failed: the test proves nothing")
		}
	})
}

// Fifty concurrent scrapes (with --web.max-requests above 50) get the same data while snapshots are swapped
// under them (run with -race).
func TestConcurrentScrapesWhileSnapshotsSwap(t *testing.T) {
	r := newRig(t)
	defer r.stop()
	deadline := time.Now().Add(10 * time.Second)
	for !r.srv.set.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	want := dataAndHealth(r.scrape(t))
	if !strings.Contains(want, "wshoto_group_customers{") || !strings.Contains(want, "wechat_miniprogram_weekly_retain_users{") {
		t.Fatalf("no data to scrape:\n%s", want)
	}
	stop := make(chan struct{})
	var swapper sync.WaitGroup
	swaps := 0
	swapper.Go(func() {
		targets := []*state.Target{r.srv.set.Get("wshoto", "acme"), r.srv.set.Get("wechat_miniprogram", "shop")}
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, tg := range targets {
				cp := *tg.Snapshot()
				tg.Publish(&cp) // a new snapshot with the same data
			}
			swaps++
			runtime.Gosched()
		}
	})
	h := r.srv.handler("/metrics", 64) // above 50, or some would get 503 by design
	var scrapers sync.WaitGroup
	bodies := make([]string, 50)
	codes := make([]int, 50)
	for i := range 50 {
		scrapers.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			codes[i], bodies[i] = rec.Code, dataAndHealth(rec.Body.String())
		})
	}
	scrapers.Wait()
	close(stop)
	swapper.Wait()
	for i := range 50 {
		if codes[i] != http.StatusOK || bodies[i] != want {
			t.Fatalf("scrape %d: %d, body differs:\n%s", i, codes[i], bodies[i])
		}
	}
	t.Logf("50 identical scrapes across %d snapshot swaps", swaps)
}

// blockingCollector holds a scrape until released.
type blockingCollector struct{ entered, release chan struct{} }

func (b blockingCollector) Describe(chan<- *prometheus.Desc) {}
func (b blockingCollector) Collect(chan<- prometheus.Metric) {
	b.entered <- struct{}{}
	<-b.release
}

// --web.max-requests bounds concurrent scrapes: one over the limit gets a
// 503 at once rather than queueing.
func TestMaxRequestsInFlight(t *testing.T) {
	r := newRig(t)
	defer r.stop()
	b := blockingCollector{entered: make(chan struct{}), release: make(chan struct{})}
	r.srv.registry.MustRegister(b)
	h := r.srv.handler("/metrics", 1)
	first := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		first <- rec.Code
	}()
	<-b.entered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Limit of concurrent requests reached (1)") {
		t.Errorf("second scrape while one is in flight: %d %q", rec.Code, rec.Body.String())
	}
	close(b.release)
	if code := <-first; code != http.StatusOK {
		t.Errorf("first scrape: %d", code)
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/-/reload", nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
			t.Errorf("%s /-/reload: %d, Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

// runLoops counts the scheduler loops alive in the process.
func runLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("scheduler.Run("))
}

// Reloads in process: a broken file keeps the old targets serving; a
// removed target's series vanish and its loop stops; an added one starts;
// a rotated secret file is read again. Then shutdown leaves no goroutine.
func TestReloadTargetsAndSecretFile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		secretFile := filepath.Join(dir, "ws-secret")
		if err := os.WriteFile(secretFile, []byte(rigWshotoSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		withFile := strings.Replace(fmt.Sprintf(rigConfig, "REPLACE", rigTagIDs(), rigWechatSecret), "app_secret: REPLACE", "app_secret_file: "+secretFile, 1)
		r := newRig(t, func(r *rig) { r.setConfig(withFile) })
		synctest.Wait()
		body := r.scrape(t)
		if !strings.Contains(body, `target="shop"`) || runLoops() != 2 {
			t.Fatalf("start: %d loops\n%s", runLoops(), lines(body, "wechat_retention_exporter_last_refresh_success{"))
		}
		good := lines(body, "wshoto_", "wechat_miniprogram_")

		r.setConfig("wshoto:\n  - name: acme\n    tag_idz: [x]\n")
		if err := r.srv.apply(); err == nil || !strings.Contains(err.Error(), "tag_idz") {
			t.Fatalf("broken file: %v", err)
		}
		synctest.Wait()
		body = r.scrape(t)
		if lines(body, "wshoto_", "wechat_miniprogram_") != good || !strings.Contains(body, "wechat_retention_exporter_config_last_reload_successful 0") || runLoops() != 2 {
			t.Errorf("a broken file changed what is served (%d loops)", runLoops())
		}

		// The secret is rotated in the console and in the file; the
		// mini-program goes and a second corp comes.
		const rotated = "ws-rotated-secret-2"
		r.ws.RotateSecret(rotated)
		if err := os.WriteFile(secretFile, []byte(rotated+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := withFile[:strings.Index(withFile, "wechat_miniprogram:")] + strings.ReplaceAll(`  - name: beta
    base_url: http://wshoto.test
    appid: wsappid
    app_secret_file: FILE
    tag_ids: [`+wshototest.DemoTags[0].ID+`]
`, "FILE", secretFile)
		r.setConfig(cfg)
		if err := r.srv.apply(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		body = r.scrape(t)
		if strings.Contains(body, `target="shop"`) || strings.Contains(body, `app="`+rigWechatAppID+`"`) {
			t.Errorf("the removed target's series are still served:\n%s", lines(body, "wechat_miniprogram_weekly_retain_users{"))
		}
		if n := runLoops(); n != 2 {
			t.Errorf("%d scheduler loops after removing one target and adding one, want 2", n)
		}
		if !strings.Contains(body, `wshoto_group_customers{corp="beta"`) {
			t.Errorf("the added target serves nothing:\n%s", lines(body, "wechat_retention_exporter_last_refresh_success{"))
		}
		// The fake accepts only the rotated secret: beta refreshing proves
		// the file was read again.
		if !strings.Contains(body, `wechat_retention_exporter_last_refresh_success{source="wshoto",target="beta"} 1`) {
			t.Errorf("beta did not refresh with the secret read again from the file:\n%s", lines(body, "wechat_retention_exporter_refresh_errors_total{reason=\"token\"", "last_refresh_success{"))
		}
		if strings.Contains(r.logs.String(), rotated) || strings.Contains(r.logs.String(), rigWshotoSecret) {
			t.Error("a secret is in the log")
		}
		r.stop()
		if n := runLoops(); n != 0 {
			t.Errorf("%d scheduler loops after shutdown", n)
		}
	})
}
