package exposition_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/wechat-retention/wechat_retention_exporter/collector"
	"github.com/wechat-retention/wechat_retention_exporter/exposition"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

func snapshot(customers float64) *state.Snapshot {
	return &state.Snapshot{Wshoto: &state.Wshoto{
		DateStart: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC),
		Records:   []wshoto.Record{{TagID: "t1", TagName: "新客", Customers: apicall.Number{Value: customers, Valid: true}}},
	}}
}

type rig struct {
	h      http.Handler
	target *state.Target
	live   prometheus.Counter
}

func newRig() *rig {
	set := &state.Set{}
	t := state.NewTarget(state.SourceWshoto, "acme", time.UTC)
	t.Publish(snapshot(100))
	set.Replace([]*state.Target{t})
	live := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "live_total", Help: "Changes at every scrape."})
	live.MustRegister(c)
	data := prometheus.NewRegistry()
	data.MustRegister(collector.NewData(set))
	return &rig{h: exposition.New(live, data, set, slog.New(slog.DiscardHandler), 0), target: t, live: c}
}

func (r *rig) get(t *testing.T, header ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	resp := rec.Result()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.Header.Get("Content-Encoding") != "gzip" {
		return resp, rec.Body.String()
	}
	// One member, valid CRC and length: what curl and browsers need.
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if rest, _ := io.ReadAll(rec.Body); len(rest) != 0 {
		t.Fatalf("%d bytes after the gzip member", len(rest))
	}
	return resp, string(b)
}

// Plain and gzip answers are the same text; the live part is fresh at
// every scrape, the data change when a snapshot is swapped.
func TestCachedDataLiveCountersAndSwaps(t *testing.T) {
	r := newRig()
	_, plain := r.get(t)
	_, gz := r.get(t, "Accept-Encoding", "gzip")
	if !strings.Contains(plain, `wshoto_group_customers{corp="acme",tag_id="t1",tag_name="新客"} 100`) || !strings.Contains(plain, "live_total 0") {
		t.Fatalf("plain:\n%s", plain)
	}
	if gz != plain {
		t.Errorf("gzip body differs:\n%s\n---\n%s", gz, plain)
	}
	r.live.Inc()
	if _, body := r.get(t, "Accept-Encoding", "gzip, deflate"); !strings.Contains(body, "live_total 1") {
		t.Errorf("live part cached:\n%s", body)
	}
	r.target.Publish(snapshot(120))
	for _, enc := range []string{"", "gzip"} {
		if _, body := r.get(t, "Accept-Encoding", enc); !strings.Contains(body, `tag_name="新客"} 120`) || strings.Contains(body, "} 100") {
			t.Errorf("encoding %q after a swap:\n%s", enc, body)
		}
	}
	if _, body := r.get(t, "Accept-Encoding", "gzip;q=0"); strings.Contains(body, "\x1f\x8b") || !strings.Contains(body, "live_total") {
		t.Errorf("gzip;q=0 answered compressed")
	}
}

// A protobuf request gets protobuf, with the data and live families.
func TestProtobufNegotiation(t *testing.T) {
	r := newRig()
	resp, body := r.get(t, "Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "application/vnd.google.protobuf") {
		t.Fatalf("content type %q", ct)
	}
	dec := expfmt.NewDecoder(bytes.NewReader([]byte(body)), expfmt.NewFormat(expfmt.TypeProtoDelim))
	var names []string
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		names = append(names, mf.GetName())
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "wshoto_group_customers") || !strings.Contains(got, "live_total") {
		t.Errorf("families %q", got)
	}
}
