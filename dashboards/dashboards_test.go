package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the JSON files from the definitions")

func render(t *testing.T, d *dashboard) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d.json()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The shipped JSON is what the definitions produce.
func TestFilesMatchDefinitions(t *testing.T) {
	for name, d := range definitions {
		want := render(t, d)
		if *update {
			if err := os.WriteFile(name, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from its definition: run go test ./dashboards -update", name)
		}
	}
	entries, _ := Files.ReadDir(".")
	if len(entries) != len(definitions) {
		t.Errorf("%d JSON files for %d definitions", len(entries), len(definitions))
	}
}

// Panel is the part of a Grafana panel the checks read.
type Panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Interval    string `json:"interval"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Panels []Panel `json:"panels"`
}

// Dashboard is the part of a Grafana dashboard the checks read.
type Dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// What a user importing the dashboards relies on, checked on the files.
func TestDashboardConventions(t *testing.T) {
	uids := map[string]bool{}
	entries, _ := Files.ReadDir(".")
	for _, e := range entries {
		raw, _ := Files.ReadFile(e.Name())
		var d Dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if d.SchemaVersion < 39 {
			t.Errorf("%s: schemaVersion %d < 39", e.Name(), d.SchemaVersion)
		}
		if d.UID == "" || uids[d.UID] || len(d.UID) > 40 {
			t.Errorf("%s: uid %q missing, too long or not unique", e.Name(), d.UID)
		}
		uids[d.UID] = true
		if len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
			t.Errorf("%s: first variable is not a prometheus data source variable", e.Name())
		}
		// No data source UID other than the variable anywhere in the file.
		for _, m := range strings.Split(string(raw), `"uid": "`)[1:] {
			if uid := m[:strings.IndexByte(m, '"')]; uid != "${datasource}" && uid != d.UID {
				t.Errorf("%s: hard-coded uid %q", e.Name(), uid)
			}
		}
		ids := map[int]bool{}
		var check func(p Panel)
		check = func(p Panel) {
			where := e.Name() + ": " + p.Title
			if ids[p.ID] {
				t.Errorf("%s: duplicate panel id %d", where, p.ID)
			}
			ids[p.ID] = true
			if p.Description == "" {
				t.Errorf("%s: no description", where)
			}
			if p.Type == "row" {
				for _, c := range p.Panels {
					check(c)
				}
				return
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: data source is not ${datasource}", where)
			}
			unit := p.FieldConfig.Defaults.Unit
			if unit == "" {
				t.Errorf("%s: no unit", where)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, q := range p.Targets {
				switch {
				case strings.Contains(q.Expr, "_ratio{") && p.Type != "table" && unit != "percentunit":
					t.Errorf("%s: ratio drawn with unit %q", where, unit)
				case strings.Contains(q.Expr, "timestamp_seconds") && strings.HasSuffix(q.Expr, "* 1000") && !strings.HasPrefix(unit, "dateTime"):
					t.Errorf("%s: date drawn with unit %q", where, unit)
				}
				// Daily data must read the same live and backfilled.
				if strings.Contains(q.Expr, "last_over_time(") {
					if !strings.Contains(q.Expr, "[$__interval])") || !slices.Contains([]string{"1d", "7d", "31d"}, p.Interval) {
						t.Errorf("%s: last_over_time needs [$__interval] and a 1d/7d/31d min interval, got %q", where, p.Interval)
					}
				}
				if !q.Instant && !strings.Contains(q.Expr, "[$__") && strings.Contains(q.Expr, "_retain_") {
					t.Errorf("%s: retain series over time without last_over_time: %s", where, q.Expr)
				}
			}
		}
		for _, p := range d.Panels {
			check(p)
		}
	}
	if len(uids) != 3 {
		t.Errorf("%d dashboards, want 3", len(uids))
	}
}
