package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wre-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, exporterName)
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the binary: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
}

// syncBuffer collects the exporter's log while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startAt(t, freeAddr(t), args...)
}

// startAt starts the exporter listening on addr.
func startAt(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	p := &proc{addr: addr, logs: &syncBuffer{}}
	p.cmd = exec.Command(binary, append(args, "--web.listen-address="+p.addr, "--log.level=debug")...)
	p.cmd.Stderr = p.logs
	p.cmd.Dir = t.TempDir()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("exporter log:\n%s", p.logs)
		}
	})
	return p
}

func (p *proc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proc) post(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+p.addr+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls path until cond holds, for at most limit.
func (p *proc) waitFor(t *testing.T, path string, limit time.Duration, cond func(int, string) bool) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		code, body := p.get(t, path)
		if cond(code, body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not get there within %s: last answer %d\n%.2000s", path, limit, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func has(s string) func(int, string) bool {
	return func(code int, body string) bool { return code == 200 && strings.Contains(body, s) }
}

func promtoolCheck(t *testing.T, exposition string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestDemo(t *testing.T) {
	began := time.Now()
	p := start(t, "--demo")
	p.waitFor(t, "/metrics", 10*time.Second, has(`wshoto_group_customers{corp="demo-corp",tag_id="etMNcGDQAAbj0PNq",tag_name="高意向客户"}`))
	t.Logf("demo served wshoto metrics after %s", time.Since(began).Round(time.Millisecond))
	p.waitFor(t, "/-/ready", 10*time.Second, func(code int, _ string) bool { return code == 200 })
	body := p.waitFor(t, "/metrics", 10*time.Second, has(`wechat_miniprogram_weekly_retain_users{app="demo-shop",appid="wxd0e1m2o3a4p5p6i7",cohort="new",key="4"}`))
	t.Logf("demo served both sources after %s", time.Since(began).Round(time.Millisecond))
	for _, name := range []string{"wechat_miniprogram_daily_retain_ratio", "wechat_miniprogram_monthly_retain_cohort_start_timestamp_seconds"} {
		if !strings.Contains(body, name+"{") {
			t.Errorf("demo lacks %s", name)
		}
	}
	promtoolCheck(t, body)
	if code, _ := p.get(t, "/-/healthy"); code != 200 {
		t.Errorf("/-/healthy = %d", code)
	}
	_, landing := p.get(t, "/")
	if !strings.Contains(landing, `href="/metrics"`) || !strings.Contains(landing, `href="/status"`) {
		t.Errorf("landing page lacks links:\n%s", landing)
	}
	_, status := p.get(t, "/status")
	if !strings.Contains(status, `<td data-label="Target">demo-corp</td>`) || !strings.Contains(status, `<td data-label="Target">demo-shop</td>`) || !strings.Contains(status, `class="ok">success`) {
		t.Errorf("status page lacks the target row:\n%s", status)
	}
	if code, _ := p.get(t, "/-/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload = %d, want 405", code)
	}
}

func TestCheckConfig(t *testing.T) {
	run := func(file string) (int, string) {
		out, err := exec.Command(binary, "check-config", "--config.file="+file).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	if code, out := run("config/testdata/good.yml"); code != 0 || !strings.Contains(out, "valid: 2 wshoto target(s) [acme beta], 2 wechat_miniprogram target(s) [mall shop]") {
		t.Errorf("good file: exit %d\n%s", code, out)
	}
	code, out := run("config/testdata/unknown_key.bad.yml")
	if code != 1 || !strings.Contains(out, "unknown_key.bad.yml:5: wshoto[0].tag_idz: unknown key") || !strings.Contains(out, "2 problem(s)") {
		t.Errorf("bad file: exit %d\n%s", code, out)
	}
	if code, out := run("exporter.yml"); code != 1 || !strings.Contains(out, "app_secret_file: cannot read secret file") {
		t.Errorf("shipped example (its secret file does not exist here): exit %d\n%s", code, out)
	}
	if code, out := run("config/testdata/good.yml"); strings.Contains(out, "s3cr3t-inline") || code != 0 {
		t.Errorf("secret printed:\n%s", out)
	}
}

// The shipped example is a working configuration once its placeholders
// are filled in.
func TestShippedExampleIsValid(t *testing.T) {
	b, err := os.ReadFile("exporter.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	_ = os.WriteFile(secret, []byte("x\n"), 0o600)
	yml := strings.ReplaceAll(string(b), "/etc/wechat_retention_exporter/wshoto_acme.secret", secret)
	yml = strings.ReplaceAll(yml, "/etc/wechat_retention_exporter/shop.secret", secret)
	file := filepath.Join(dir, "exporter.yml")
	_ = os.WriteFile(file, []byte(yml), 0o600)
	if out, err := exec.Command(binary, "check-config", "--config.file="+file).CombinedOutput(); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}

const fileConfig = `global:
  timezone: Asia/Shanghai
wshoto:
  - name: acme
    base_url: %s
    appid: file-appid
    app_secret_file: %s
    tag_ids: [%s]
`

// Against the fake on a loopback port: yesterday's numbers within 15 s,
// reloads that keep the old configuration when the new one is bad, and a
// prompt exit on SIGTERM.
func TestConfigFileReloadAndShutdown(t *testing.T) {
	f := wshototest.New("file-appid", "file-secret-123")
	srv := f.Start()
	defer srv.Close()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	_ = os.WriteFile(secretFile, []byte("file-secret-123\n"), 0o600)
	cfgFile := filepath.Join(dir, "exporter.yml")
	write := func(content string) {
		if err := os.WriteFile(cfgFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tag0, tag1 := wshototest.DemoTags[0], wshototest.DemoTags[1]
	write(fmt.Sprintf(fileConfig, srv.URL, secretFile, tag0.ID+", "+tag1.ID))

	p := start(t, "--config.file="+cfgFile)
	yesterday := calendar.LatestDailyDate(time.Now(), f.Location)
	want := wshototest.DemoRecord(tag0, yesterday)["total_customer_cnt"]
	series := fmt.Sprintf(`wshoto_group_customers{corp="acme",tag_id=%q,tag_name=%q} %d`, tag0.ID, tag0.Name, want)
	body := p.waitFor(t, "/metrics", 15*time.Second, has(series))
	dateLine := fmt.Sprintf(`wshoto_group_stats_date_timestamp_seconds{corp="acme"} %s`, formatFloat(float64(yesterday.Start(f.Location).Unix())))
	if !strings.Contains(body, dateLine) {
		t.Errorf("want %q in\n%s", dateLine, grep(body, "date_timestamp"))
	}
	callsAfterRefresh := len(f.Calls())
	for range 20 {
		p.get(t, "/metrics")
	}
	if n := len(f.Calls()); n != callsAfterRefresh {
		t.Errorf("scrapes made %d upstream calls", n-callsAfterRefresh)
	}

	// A broken file on SIGHUP: old targets keep serving, reload gauge 0.
	write("wshoto:\n  - name: acme\n    tag_idz: []\n")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	body = p.waitFor(t, "/metrics", 5*time.Second, has("wechat_retention_exporter_config_last_reload_successful 0"))
	if !strings.Contains(body, series) {
		t.Error("a failed reload lost the served values")
	}
	if code, msg := p.post(t, "/-/reload"); code != http.StatusInternalServerError || !strings.Contains(msg, "tag_idz: unknown key") {
		t.Errorf("POST /-/reload with a bad file = %d %q", code, msg)
	}

	// A good file dropping one tag: 200, and the tag vanishes.
	write(fmt.Sprintf(fileConfig, srv.URL, secretFile, tag0.ID))
	if code, msg := p.post(t, "/-/reload"); code != 200 {
		t.Fatalf("POST /-/reload = %d %q", code, msg)
	}
	body = p.waitFor(t, "/metrics", 5*time.Second, func(_ int, b string) bool { return !strings.Contains(b, tag1.ID) })
	if !strings.Contains(body, "wechat_retention_exporter_config_last_reload_successful 1") || !strings.Contains(body, series) {
		t.Errorf("after a good reload:\n%s", grep(body, "reload|wshoto_group_customers"))
	}

	// SIGTERM during a slow upstream call returns promptly.
	f.Inject(wshoto.AnalyzePath, wshototest.Fault{Delay: time.Minute})
	write(fmt.Sprintf(fileConfig, srv.URL, secretFile, tag1.ID))
	p.post(t, "/-/reload")
	time.Sleep(200 * time.Millisecond)
	began := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
		t.Logf("SIGTERM to exit: %s", time.Since(began).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("no exit within 5 s of SIGTERM")
	}
	if strings.Contains(p.logs.String(), "file-secret-123") {
		t.Error("secret in the log")
	}
}

// formatFloat formats v as the text exposition does.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func grep(body, pattern string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range strings.Split(pattern, "|") {
			if strings.Contains(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// The binary pointed at the WeChat fake on a loopback port serves exactly
// its numbers: weekly keys 0-4 each from the right cohort week, ratios,
// cohort starts, and daily keys with retain: [weekly, daily].
func TestMiniprogramAgainstFake(t *testing.T) {
	f := wechattest.New("wxfeedface12345678", "mp-secret-987")
	srv := f.Start()
	defer srv.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "exporter.yml")
	_ = os.WriteFile(filepath.Join(dir, "mp.secret"), []byte("mp-secret-987"), 0o600)
	_ = os.WriteFile(cfgFile, []byte(fmt.Sprintf(`wechat_miniprogram:
  - name: shop
    base_url: %s
    appid: wxfeedface12345678
    secret_file: mp.secret
    retain: [weekly, daily]
`, srv.URL)), 0o600)
	p := start(t, "--config.file="+cfgFile)
	body := p.waitFor(t, "/metrics", 15*time.Second, has(`wechat_miniprogram_daily_retain_users{app="shop",appid="wxfeedface12345678",cohort="active",key="30"}`))
	now := time.Now()
	lines := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		lines[l] = true
	}
	check := func(kind wechat.Kind, keys []int) {
		p := kind.Period()
		latest := p.LatestComplete(now, f.Location)
		for _, key := range keys {
			cohort := p.Add(latest, -key)
			for _, c := range []struct {
				name   string
				active bool
			}{{"new", false}, {"active", true}} {
				v := wechattest.DemoValue(f.AppID, kind, cohort, key, c.active)
				want := fmt.Sprintf(`wechat_miniprogram_%s_retain_users{app="shop",appid="wxfeedface12345678",cohort=%q,key="%d"} %s`, kind, c.name, key, formatFloat(v))
				if !lines[want] {
					t.Errorf("missing %s", want)
				}
				if key > 0 {
					ratio := v / wechattest.DemoValue(f.AppID, kind, cohort, 0, c.active)
					want := fmt.Sprintf(`wechat_miniprogram_%s_retain_ratio{app="shop",appid="wxfeedface12345678",cohort=%q,key="%d"} %s`, kind, c.name, key, formatFloat(ratio))
					if !lines[want] {
						t.Errorf("missing %s", want)
					}
				}
			}
			start := fmt.Sprintf(`wechat_miniprogram_%s_retain_cohort_start_timestamp_seconds{app="shop",appid="wxfeedface12345678",key="%d"} %s`, kind, key, formatFloat(float64(cohort.Start(f.Location).Unix())))
			if !lines[start] {
				t.Errorf("missing %s", start)
			}
		}
	}
	check(wechat.Weekly, []int{0, 1, 2, 3, 4})
	check(wechat.Daily, []int{0, 1, 2, 3, 4, 5, 6, 7, 14, 30})
	if strings.Contains(body, "wechat_miniprogram_monthly_") {
		t.Error("monthly served without being enabled")
	}
	if n := f.CallCount(wechat.ClassicTokenPath); n != 0 {
		t.Errorf("token: stable called /cgi-bin/token %d times", n)
	}
	promtoolCheck(t, body)
}
