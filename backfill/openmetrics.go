package backfill

import (
	"bufio"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// series collects timestamped samples and writes them as OpenMetrics text:
// families sorted by name, each series' points grouped and in time order,
// ending in # EOF, as promtool tsdb create-blocks-from openmetrics wants.
type series struct {
	help   map[string]string
	points map[string]map[string][]point // family -> label text -> points
}

type point struct {
	at    time.Time
	value float64
}

func newSeries() *series {
	return &series{help: map[string]string{}, points: map[string]map[string][]point{}}
}

// add records every gauge sample of families at the moment at.
func (s *series) add(families []*dto.MetricFamily, at time.Time) {
	for _, f := range families {
		name := f.GetName()
		if f.GetType() != dto.MetricType_GAUGE {
			continue
		}
		if _, ok := s.points[name]; !ok {
			s.points[name] = map[string][]point{}
			s.help[name] = f.GetHelp()
		}
		for _, m := range f.GetMetric() {
			key := labelText(m.GetLabel())
			s.points[name][key] = append(s.points[name][key], point{at, m.GetGauge().GetValue()})
		}
	}
}

// count returns the number of samples held.
func (s *series) count() int {
	n := 0
	for _, byLabels := range s.points {
		for _, ps := range byLabels {
			n += len(ps)
		}
	}
	return n
}

func labelText(pairs []*dto.LabelPair) string {
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.GetName())
		b.WriteString(`="`)
		b.WriteString(escaper.Replace(p.GetValue()))
		b.WriteByte('"')
	}
	return b.String()
}

// escaper escapes label values and HELP text: OpenMetrics treats both alike.
var escaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func (s *series) writeTo(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, name := range slices.Sorted(maps.Keys(s.points)) {
		bw.WriteString("# HELP " + name + " " + escaper.Replace(s.help[name]) + "\n")
		bw.WriteString("# TYPE " + name + " gauge\n")
		byLabels := s.points[name]
		for _, labels := range slices.Sorted(maps.Keys(byLabels)) {
			ps := byLabels[labels]
			slices.SortStableFunc(ps, func(a, b point) int { return a.at.Compare(b.at) })
			ps = slices.CompactFunc(ps, func(a, b point) bool { return a.at.Equal(b.at) })
			for _, p := range ps {
				bw.WriteString(name)
				if labels != "" {
					bw.WriteString("{" + labels + "}")
				}
				bw.WriteByte(' ')
				bw.WriteString(strconv.FormatFloat(p.value, 'g', -1, 64))
				bw.WriteByte(' ')
				bw.WriteString(strconv.FormatInt(p.at.Unix(), 10))
				bw.WriteByte('\n')
			}
		}
	}
	bw.WriteString("# EOF\n")
	return bw.Flush()
}
