package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/source"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// manyTags returns n tags with realistic ids and Chinese names.
func manyTags(n int) []wshototest.Tag {
	tags := make([]wshototest.Tag, n)
	for i := range tags {
		tags[i] = wshototest.Tag{ID: fmt.Sprintf("etMNcGDQAA%06d", i), Name: fmt.Sprintf("客户标签%d·上海", i)}
	}
	return tags
}

func tagConfig(baseURL string, tags []wshototest.Tag, rateLimit string) string {
	ids := make([]string, len(tags))
	for i, t := range tags {
		ids[i] = t.ID
	}
	return fmt.Sprintf("wshoto:\n  - name: acme\n    base_url: %s\n    appid: wsappid\n    app_secret: %s\n    rate_limit: %s\n    tag_ids: [%s]\n",
		baseURL, rigWshotoSecret, rateLimit, strings.Join(ids, ", "))
}

// benchServer is an exporter in process with n tags refreshed from an
// in-memory fake.
func benchServer(b *testing.B, n int) (*server, func()) {
	b.Helper()
	f := wshototest.New("wsappid", rigWshotoSecret)
	f.Tags = manyTags(n)
	cfg := tagConfig("http://wshoto.test", f.Tags, "1000")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := newServer(ctx, slog.New(slog.DiscardHandler), func() (*config.Config, error) { return config.Parse("bench.yml", []byte(cfg)) },
		source.Deps{HTTPClient: func(string) *http.Client { return upstreamtest.Client(f) }})
	if err != nil {
		b.Fatal(err)
	}
	for !srv.set.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	return srv, func() { cancel(); srv.manager.Stop() }
}

// BenchmarkScrape serves /metrics for 100, 1,000 and 10,000 tags, plain
// and gzipped, and compares it with writing the same bytes pre-rendered
// (the floor: what any handler must at least do).
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		srv, stop := benchServer(b, n)
		h := srv.handler("/metrics", 0)
		for _, enc := range []string{"plain", "gzip"} {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if enc == "gzip" {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			series := strings.Count(decoded(b, body, enc), "\nwshoto_")
			b.Run(fmt.Sprintf("tags=%d/%s/handler", n, enc), func(b *testing.B) {
				for b.Loop() {
					w := &countingWriter{header: http.Header{}}
					h.ServeHTTP(w, req)
					if w.code != 0 && w.code != http.StatusOK {
						b.Fatalf("status %d", w.code)
					}
				}
				b.ReportMetric(float64(series), "series")
				b.ReportMetric(float64(len(body)), "bytes/scrape")
			})
			b.Run(fmt.Sprintf("tags=%d/%s/prerendered", n, enc), func(b *testing.B) {
				for b.Loop() {
					w := &countingWriter{header: http.Header{}}
					w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
					_, _ = w.Write(body)
				}
			})
		}
		stop()
	}
}

func decoded(b *testing.B, body []byte, enc string) string {
	if enc != "gzip" {
		return string(body)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(zr)
	return string(out)
}

// countingWriter is a ResponseWriter that only counts, so the benchmark
// measures the handler and not a buffer growing.
type countingWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(code int)        { w.code = code }
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkTenThousandTags runs the binary against a wshoto fake on a
// loopback port (another process's view: real HTTP, the default rate limit
// of 10 calls/s) with 10,000 tags, and reports the time to first data,
// the p50 of gzip scrapes, the resident memory, and the upstream calls
// made while the data are current (which must be none).
func BenchmarkTenThousandTags(b *testing.B) {
	f := wshototest.New("wsappid", rigWshotoSecret)
	f.Tags = manyTags(10000)
	upstream := f.Start()
	defer upstream.Close()
	dir := b.TempDir()
	cfgFile := dir + "/exporter.yml"
	if err := os.WriteFile(cfgFile, []byte(tagConfig(upstream.URL, f.Tags, "10")), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f.ResetCalls()
		addr := freeAddr(b)
		cmd := exec.Command(binary, "--config.file="+cfgFile, "--web.listen-address="+addr, "--log.level=warn")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		scrape := func() (int, time.Duration) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return 0, 0
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return int(n), time.Since(t0)
		}
		for {
			resp, err := http.Get("http://" + addr + "/-/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Since(began) > 2*time.Minute {
				b.Fatal("no data within 2 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		firstData := time.Since(began)
		calls := len(f.Calls())
		var took []time.Duration
		size := 0
		for range 21 {
			n, d := scrape()
			size, took = n, append(took, d)
		}
		slices.Sort(took)
		rss := rssBytes(cmd.Process.Pid)
		if extra := len(f.Calls()) - calls; extra != 0 {
			b.Errorf("%d upstream calls during 21 scrapes of current data", extra)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.ReportMetric(firstData.Seconds(), "s-to-first-data")
		b.ReportMetric(float64(calls), "upstream-calls")
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-gzip-scrape-p50")
		b.ReportMetric(float64(size), "gzip-bytes")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-RSS")
	}
}

// rssBytes reads VmRSS of a process from /proc.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return -1
}
