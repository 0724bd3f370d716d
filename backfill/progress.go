package backfill

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress reports items done and the time left: a redrawn bar on a
// terminal, one plain line per item otherwise (logs, CI).
type progress struct {
	w           io.Writer
	terminal    bool
	total, done int
	began       time.Time
}

func newProgress(w io.Writer, terminal bool, total int) *progress {
	return &progress{w: w, terminal: terminal, total: total, began: time.Now()}
}

func (p *progress) step(label string) {
	p.done++
	p.draw(label)
}

// skip counts items that will not run (their target failed).
func (p *progress) skip(n int) { p.done += n }

func (p *progress) eta() string {
	if p.done == 0 {
		return "?"
	}
	left := time.Since(p.began) / time.Duration(p.done) * time.Duration(max(p.total-p.done, 0))
	return left.Round(time.Second).String()
}

func (p *progress) draw(label string) {
	if p.w == nil {
		return
	}
	if !p.terminal {
		fmt.Fprintf(p.w, "backfill: %d/%d done, ETA %s: %s\n", p.done, p.total, p.eta(), label)
		return
	}
	const width = 30
	filled := width
	if p.total > 0 {
		filled = min(width, p.done*width/p.total)
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d  ETA %-8s %s\x1b[K", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.done, p.total, p.eta(), label)
}

func (p *progress) finish() {
	if p.w != nil && p.terminal {
		fmt.Fprintln(p.w)
	}
}
