// Package exposition serves /metrics. The data series change only when a
// refresh swaps a snapshot, a few times a day, yet a scrape of 10,000 tags
// is 110,000 series: encoding and compressing them on every scrape would
// cost hundreds of milliseconds. So the data are encoded (and deflated)
// once per set of snapshots and content type, and each scrape encodes only
// the small live part (the exporter's own counters, Go and process
// metrics) after them. The gzip answer is one member: the cached deflate
// blocks end with a sync flush, the live part's blocks follow and end the
// stream, and the CRC-32 continues from the cached one. (Two gzip members
// would be valid too, but curl and browsers stop after the first.)
package exposition

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/wechat-retention/wechat_retention_exporter/state"
)

// Handler serves the live gatherer's families followed by the data
// gatherer's, the latter cached per snapshot set.
type Handler struct {
	live, data prometheus.Gatherer
	set        *state.Set
	logger     *slog.Logger
	inFlight   chan struct{} // nil: unlimited

	mu      sync.Mutex
	key     []*state.Snapshot // the snapshots the cache was rendered from
	targets []*state.Target
	cache   map[expfmt.Format]*rendered
}

type rendered struct {
	once    sync.Once
	plain   []byte
	deflate []byte // plain as raw deflate blocks, sync-flushed, not final
	crc     uint32 // CRC-32 of plain
	err     error
}

// New returns a handler; maxInFlight > 0 answers 503 to scrapes beyond it,
// as promhttp does.
func New(live, data prometheus.Gatherer, set *state.Set, logger *slog.Logger, maxInFlight int) *Handler {
	h := &Handler{live: live, data: data, set: set, logger: logger}
	if maxInFlight > 0 {
		h.inFlight = make(chan struct{}, maxInFlight)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", cap(h.inFlight)), http.StatusServiceUnavailable)
			return
		}
	}
	format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...)
	data := h.rendered(format)
	if data.err != nil {
		h.logger.Error("encoding the data series", "err", data.err)
		http.Error(w, "An error has occurred while serving metrics:\n\n"+data.err.Error(), http.StatusInternalServerError)
		return
	}
	var live bytes.Buffer
	mfs, err := h.live.Gather()
	if err != nil {
		// As promhttp.ContinueOnError: serve what could be gathered.
		h.logger.Error("gathering the exporter's own metrics", "err", err)
	}
	enc := expfmt.NewEncoder(&live, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			h.logger.Error("encoding the exporter's own metrics", "err", err)
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	header := w.Header()
	header.Set("Content-Type", string(format))
	header.Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r) {
		_, _ = w.Write(data.plain)
		_, _ = w.Write(live.Bytes())
		return
	}
	header.Set("Content-Encoding", "gzip")
	_ = writeGzip(w, data, live.Bytes())
}

// gzipHeader is a member header: deflate, no name, no time, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// writeGzip writes one gzip member holding data.plain then live.
func writeGzip(w io.Writer, data *rendered, live []byte) error {
	if _, err := w.Write(gzipHeader); err != nil {
		return err
	}
	if _, err := w.Write(data.deflate); err != nil {
		return err
	}
	fw, _ := flate.NewWriter(w, flate.BestSpeed)
	_, _ = fw.Write(live)
	if err := fw.Close(); err != nil {
		return err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc32.Update(data.crc, crc32.IEEETable, live))
	binary.LittleEndian.PutUint32(trailer[4:], uint32(len(data.plain)+len(live)))
	_, err := w.Write(trailer[:])
	return err
}

// rendered returns the data encoded in format for the current snapshots,
// rendering it if a snapshot changed since.
func (h *Handler) rendered(format expfmt.Format) *rendered {
	targets := h.set.Targets()
	key := make([]*state.Snapshot, len(targets))
	for i, t := range targets {
		key[i] = t.Snapshot()
	}
	h.mu.Lock()
	if !slices.Equal(key, h.key) || !slices.Equal(targets, h.targets) {
		h.key, h.targets, h.cache = key, targets, map[expfmt.Format]*rendered{}
	}
	c := h.cache[format]
	if c == nil {
		c = &rendered{}
		h.cache[format] = c
	}
	h.mu.Unlock()
	// Concurrent scrapes of a new snapshot wait for one rendering. The
	// data gatherer may already see a newer snapshot than key: then the
	// next scrape renders again, so what is served is never older.
	c.once.Do(func() { c.err = c.render(h.data, format) })
	return c
}

func (c *rendered) render(g prometheus.Gatherer, format expfmt.Format) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	var plain bytes.Buffer
	enc := expfmt.NewEncoder(&plain, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	var deflated bytes.Buffer
	fw, _ := flate.NewWriter(&deflated, flate.BestCompression) // once per snapshot: worth the time
	_, _ = fw.Write(plain.Bytes())
	if err := fw.Flush(); err != nil { // byte-aligned, and not the final block
		return err
	}
	c.plain, c.deflate, c.crc = plain.Bytes(), deflated.Bytes(), crc32.ChecksumIEEE(plain.Bytes())
	return nil
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
