package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/source"
)

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// Every metric the exporter registers is documented in the README's
// metrics reference (the Go and process collectors' standard ones aside).
func TestMetricsReferenceInREADME(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	load := func() (*config.Config, error) {
		return config.Parse("(test)", []byte("wshoto:\n  - {name: a, base_url: \"http://127.0.0.1:9\", appid: a, app_secret: s, tag_ids: [t]}\n"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := newServer(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), load, source.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.manager.Stop()
	ch := make(chan *prometheus.Desc, 100)
	go func() {
		live, data := s.collectors()
		for _, c := range append(live, data) {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		m := fqNameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		if strings.HasPrefix(m[1], "go_") || strings.HasPrefix(m[1], "process_") {
			continue
		}
		names = append(names, m[1])
		if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("metric %s is registered but missing from the README's metrics reference", m[1])
		}
	}
	if len(names) < 20 {
		t.Errorf("only %d metrics described: %v", len(names), names)
	}
}

// The static binary carries its own time zone data: with no zoneinfo on
// the machine (hidden by a tmpfs in a private mount namespace) and
// ZONEINFO pointing nowhere, --version and check-config of a config in
// Asia/Shanghai work.
func TestStaticBinaryWithoutZoneinfo(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, exporterName)
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 build: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "version", "-m", bin).Output(); err != nil || !strings.Contains(string(out), "CGO_ENABLED=0") {
		t.Fatalf("binary not built with CGO_ENABLED=0: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "exporter.yml")
	_ = os.WriteFile(cfg, []byte(`global:
  timezone: Asia/Shanghai
wshoto:
  - name: acme
    appid: a
    app_secret: s
    tag_ids: [t]
`), 0o600)
	// The script fails unless the zone files are really gone.
	script := `set -e
for d in /usr/share/zoneinfo /usr/share/lib/zoneinfo /etc/zoneinfo; do
  if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi
done
test ! -e /usr/share/zoneinfo/Asia/Shanghai
"$0" --version
"$0" check-config --config.file="$1"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, bin, cfg)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "ZONEINFO=/nonexistent/zoneinfo.zip", "TZ=Asia/Shanghai"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("without zoneinfo: %v\n%s", err, out)
	}
	for _, want := range []string{exporterName + ", version", "valid"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// /status rendered by a real browser: headless Chromium loads it from the
// demo, the table has a row per target, and a phone-sized screenshot is
// left in a temporary folder to look at.
func TestStatusPageInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (Debian package chromium; .ci/run installs it)")
	}
	p := start(t, "--demo")
	p.waitFor(t, "/-/ready", 15*time.Second, func(code int, _ string) bool { return code == 200 })
	url := "http://" + p.addr + "/status"
	chrome := func(args ...string) string {
		profile := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
			"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	dom := chrome("--dump-dom", url)
	rows := regexp.MustCompile(`(?s)<tr>\s*<td[^>]*>(wshoto|wechat_miniprogram)</td>\s*<td[^>]*>([^<]+)</td>`).FindAllStringSubmatch(dom, -1)
	got := map[string]bool{}
	for _, r := range rows {
		got[r[1]+"/"+r[2]] = true
	}
	for _, want := range []string{"wshoto/demo-corp", "wechat_miniprogram/demo-shop"} {
		if !got[want] {
			t.Errorf("no table row for %s in the rendered page:\n%s", want, dom)
		}
	}
	if len(rows) != 2 {
		t.Errorf("%d target rows, want 2", len(rows))
	}
	if strings.Contains(dom, "src=\"http") || strings.Contains(dom, "href=\"http") {
		t.Error("the page loads external assets")
	}

	shots, err := os.MkdirTemp("", "wre-status-")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []string{"390,844", "1280,720"} {
		file := filepath.Join(shots, "status-"+strings.Replace(size, ",", "x", 1)+".png")
		chrome("--window-size="+size, "--screenshot="+file, url)
		if st, err := os.Stat(file); err != nil || st.Size() < 1000 {
			t.Errorf("screenshot %s: %v", file, err)
		}
	}
	t.Logf("screenshots in %s", shots)
}
