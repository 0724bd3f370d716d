// Package statuspage renders /status: one row per target saying what it
// serves and what it is doing, for people who do not read PromQL.
package statuspage

import (
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/state"
)

type row struct {
	Source, Name, DataDay       string
	LastAttempt, Result, LastOK string
	NextCall, LastError         string
	CallsToday                  int
	Healthy                     bool
}

var page = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wechat_retention_exporter status</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top;font-size:.9em}
.ok{color:#1a7f37}.fail{color:#cf222e}.wrap{overflow-x:auto}
@media (max-width:640px){
thead{display:none}
tr{display:block;border:1px solid #ddd;border-radius:6px;margin-bottom:1em;padding:.3em}
td{display:flex;gap:1em;justify-content:space-between;border:0;padding:.25em .4em;overflow-wrap:anywhere}
td::before{content:attr(data-label);font-weight:600;flex:0 0 40%}
}
</style></head><body>
<h1>Targets</h1>
<p>Times are in {{.Zone}}. <a href="/">Home</a> · <a href="/metrics">Metrics</a></p>
<div class="wrap"><table id="targets">
<thead><tr><th>Source</th><th>Target</th><th>Data day served</th><th>Last attempt</th><th>Result</th><th>Last success</th><th>Next planned call</th><th>Upstream calls today</th><th>Last error</th></tr></thead>
<tbody>{{range .Rows}}<tr>
<td data-label="Source">{{.Source}}</td><td data-label="Target">{{.Name}}</td><td data-label="Data day served">{{.DataDay}}</td>
<td data-label="Last attempt">{{.LastAttempt}}</td><td data-label="Result" class="{{if .Healthy}}ok{{else}}fail{{end}}">{{.Result}}</td>
<td data-label="Last success">{{.LastOK}}</td><td data-label="Next planned call">{{.NextCall}}</td>
<td data-label="Upstream calls today">{{.CallsToday}}</td><td data-label="Last error">{{.LastError}}</td></tr>
{{else}}<tr><td colspan="9">No targets configured.</td></tr>{{end}}</tbody>
</table></div></body></html>
`))

// Handler serves the page for the live targets of set; loc gives the zone
// times are shown in.
func Handler(set *state.Set, loc func() *time.Location) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		zone := loc()
		if zone == nil {
			zone = time.UTC
		}
		ts := func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.In(zone).Format("2006-01-02 15:04:05")
		}
		var rows []row
		for _, t := range set.Targets() {
			s := t.Stats()
			r := row{Source: t.Source, Name: t.Name, DataDay: "none yet", LastAttempt: ts(s.LastAttempt),
				LastOK: ts(s.LastSuccess), NextCall: ts(s.NextCall), CallsToday: s.CallsToday, LastError: s.LastError}
			switch {
			case !s.Attempted:
				r.Result = "pending"
				r.Healthy = true
			case s.LastOK:
				r.Result, r.Healthy = "success", true
			default:
				r.Result = "failed"
			}
			if snap := t.Snapshot(); snap != nil && snap.Wshoto != nil {
				r.DataDay = snap.Wshoto.Date.String()
			} else if snap != nil && snap.Miniprogram != nil {
				r.DataDay = newestCohorts(snap.Miniprogram, zone)
			}
			rows = append(rows, r)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, struct {
			Zone string
			Rows []row
		}{zone.String(), rows})
	})
}

// newestCohorts names the newest cohort served per retain kind.
func newestCohorts(m *state.Miniprogram, loc *time.Location) string {
	names := [3]string{"daily", "weekly", "monthly"}
	var parts []string
	for kind, keys := range m.Retain {
		for _, k := range keys {
			if k.Key == 0 {
				parts = append(parts, names[kind]+" "+k.CohortStart.In(loc).Format(time.DateOnly))
			}
		}
	}
	if len(parts) == 0 {
		return "none yet"
	}
	return strings.Join(parts, ", ")
}
