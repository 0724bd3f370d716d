package dashboards

import "strings"

// A small builder for Grafana dashboard JSON (schema 39, Grafana 11). It
// writes only what the shipped dashboards use, with the same data source
// reference everywhere so that no data source UID is hard-coded.

type obj = map[string]any

var datasourceRef = obj{"type": "prometheus", "uid": "${datasource}"}

type dashboard struct {
	uid, title, description string
	timeFrom                string
	vars                    []obj
	panels                  []*panel
}

type panel struct {
	kind, title, description string
	unit                     string
	interval                 string // min interval, "" for Grafana's default
	targets                  []target
	w, h                     int
	options                  obj
	custom                   obj // fieldConfig.defaults.custom
	extra                    obj // more fieldConfig.defaults
	transformations          []obj
	overrides                []obj
	row                      bool
}

type target struct {
	expr, legend string
	instant      bool
	table        bool
}

// query returns a Prometheus target drawn over time.
func query(expr, legend string) target { return target{expr: expr, legend: legend} }

// latest returns a Prometheus target evaluated once, at the end of the range.
func latest(expr, legend string) target { return target{expr: expr, legend: legend, instant: true} }

// tableOf returns an instant target in table format.
func tableOf(expr string) target { return target{expr: expr, instant: true, table: true} }

func datasourceVar() obj {
	return obj{
		"name": "datasource", "label": "Data source", "type": "datasource",
		"query": "prometheus", "current": obj{}, "hide": 0, "refresh": 1,
		"regex": "", "includeAll": false, "multi": false, "options": []any{},
	}
}

// queryVar is a label_values variable.
func queryVar(name, label, definition string, multi bool) obj {
	v := obj{
		"name": name, "label": label, "type": "query",
		"datasource": datasourceRef,
		"definition": definition,
		"query":      obj{"query": definition, "qryType": 1, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
		"refresh":    2, "sort": 1, "hide": 0, "regex": "",
		"multi": multi, "includeAll": multi, "current": obj{}, "options": []any{},
	}
	return v
}

// customVar is a fixed list of values, all selected by default.
func customVar(name, label string, values []string) obj {
	var options []obj
	for _, v := range values {
		options = append(options, obj{"text": v, "value": v, "selected": false})
	}
	return obj{
		"name": name, "label": label, "type": "custom", "query": strings.Join(values, ","),
		"multi": true, "includeAll": true, "hide": 0,
		"current": obj{"text": []string{"All"}, "value": []string{"$__all"}},
		"options": options,
	}
}

// unitOverride sets the unit of one field (a table column).
func unitOverride(field, unit string) obj {
	return obj{
		"matcher":    obj{"id": "byName", "options": field},
		"properties": []obj{{"id": "unit", "value": unit}},
	}
}

func (d *dashboard) json() obj {
	var panels []any
	x, y, rowH := 0, 0, 0
	for i, p := range d.panels {
		w, h := p.w, p.h
		if p.row {
			w, h = 24, 1
		}
		if x+w > 24 || p.row {
			x, y, rowH = 0, y+rowH, 0
		}
		panels = append(panels, p.json(i+1, x, y, w, h))
		x += w
		rowH = max(rowH, h)
		if p.row {
			x, y, rowH = 0, y+1, 0
		}
	}
	return obj{
		"uid": d.uid, "title": d.title, "description": d.description,
		"tags":          []string{"wechat_retention_exporter"},
		"schemaVersion": 39, "version": 1, "editable": true, "graphTooltip": 1,
		"timezone": "browser", "refresh": "5m", "fiscalYearStartMonth": 0, "liveNow": false,
		"time":        obj{"from": d.timeFrom, "to": "now"},
		"timepicker":  obj{},
		"templating":  obj{"list": append([]obj{datasourceVar()}, d.vars...)},
		"annotations": obj{"list": []any{}},
		"links": []obj{{
			"title": "Other dashboards", "type": "dashboards", "tags": []string{"wechat_retention_exporter"},
			"asDropdown": true, "includeVars": true, "keepTime": true, "icon": "external link",
		}},
		"panels": panels,
	}
}

func (p *panel) json(id, x, y, w, h int) obj {
	out := obj{
		"id": id, "type": p.kind, "title": p.title, "description": p.description,
		"gridPos": obj{"x": x, "y": y, "w": w, "h": h},
	}
	if p.row {
		out["collapsed"] = false
		out["panels"] = []any{}
		return out
	}
	out["datasource"] = datasourceRef
	if p.interval != "" {
		out["interval"] = p.interval
	}
	var targets []obj
	for i, t := range p.targets {
		to := obj{
			"refId": string(rune('A' + i)), "datasource": datasourceRef, "expr": t.expr,
			"legendFormat": t.legend, "instant": t.instant, "range": !t.instant,
			"editorMode": "code",
		}
		if t.table {
			to["format"] = "table"
		}
		if t.legend == "" {
			to["legendFormat"] = "__auto"
		}
		targets = append(targets, to)
	}
	out["targets"] = targets
	defaults := obj{"unit": p.unit, "color": obj{"mode": "palette-classic"}}
	if p.custom != nil {
		defaults["custom"] = p.custom
	}
	for k, v := range p.extra {
		defaults[k] = v
	}
	overrides := []obj{}
	if p.overrides != nil {
		overrides = p.overrides
	}
	out["fieldConfig"] = obj{"defaults": defaults, "overrides": overrides}
	out["options"] = p.options
	if p.transformations != nil {
		out["transformations"] = p.transformations
	}
	return out
}

func row(title, description string) *panel {
	return &panel{kind: "row", title: title, description: description, row: true}
}

// timeseries draws lines (or bars) over time.
func timeseries(title, description, unit, interval string, bars bool, targets ...target) *panel {
	custom := obj{"drawStyle": "line", "lineWidth": 2, "fillOpacity": 10, "showPoints": "auto", "spanNulls": true}
	if bars {
		custom = obj{"drawStyle": "bars", "lineWidth": 1, "fillOpacity": 80, "showPoints": "never", "spanNulls": false}
	}
	p := &panel{kind: "timeseries", title: title, description: description, unit: unit, interval: interval,
		targets: targets, w: 12, h: 8, custom: custom,
		options: obj{
			"legend":  obj{"displayMode": "table", "placement": "bottom", "showLegend": true, "calcs": []string{"lastNotNull"}},
			"tooltip": obj{"mode": "multi", "sort": "desc"},
		}}
	if unit == "percentunit" {
		p.extra = obj{"min": 0, "max": 1}
	}
	return p
}

// stat shows the latest value of each series.
func stat(title, description, unit string, w int, targets ...target) *panel {
	return &panel{kind: "stat", title: title, description: description, unit: unit, targets: targets, w: w, h: 4,
		options: obj{
			"reduceOptions": obj{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"colorMode":     "value", "graphMode": "none", "justifyMode": "auto",
			"textMode": "value_and_name", "orientation": "auto",
		}}
}

// bars shows the latest value of each series as horizontal bars.
func bars(title, description, unit string, targets ...target) *panel {
	p := &panel{kind: "bargauge", title: title, description: description, unit: unit, targets: targets, w: 12, h: 8,
		options: obj{
			"reduceOptions": obj{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"orientation":   "horizontal", "displayMode": "gradient", "showUnfilled": true,
			"valueMode": "color", "namePlacement": "auto", "sizing": "auto",
		}}
	if unit == "percentunit" {
		p.extra = obj{"min": 0, "max": 1}
	}
	return p
}

// table joins instant queries on their labels, one row per series.
func table(title, description, unit string, rename obj, hide []string, targets ...target) *panel {
	exclude := obj{"Time": true, "__name__": true}
	for _, h := range hide {
		exclude[h] = true
	}
	return &panel{kind: "table", title: title, description: description, unit: unit, targets: targets, w: 24, h: 10,
		options: obj{"showHeader": true, "cellHeight": "sm", "footer": obj{"show": false, "reducer": []string{"sum"}, "fields": ""}},
		transformations: []obj{
			{"id": "merge", "options": obj{}},
			{"id": "organize", "options": obj{"excludeByName": exclude, "renameByName": rename, "indexByName": obj{}}},
		},
		custom: obj{"align": "auto", "filterable": true, "cellOptions": obj{"type": "auto"}},
	}
}

// withMappings maps values to text (and colours) on a panel.
func withMappings(p *panel, m ...obj) *panel {
	if p.extra == nil {
		p.extra = obj{}
	}
	p.extra["mappings"] = m
	return p
}

// withThresholds sets the colour steps of a panel: base colour, then
// (value, colour) pairs.
func withThresholds(p *panel, base string, steps ...any) *panel {
	if p.extra == nil {
		p.extra = obj{}
	}
	s := []obj{{"color": base, "value": nil}}
	for i := 0; i+1 < len(steps); i += 2 {
		s = append(s, obj{"value": steps[i], "color": steps[i+1]})
	}
	p.extra["thresholds"] = obj{"mode": "absolute", "steps": s}
	return p
}

func valueText(value, text, color string) obj {
	return obj{"type": "value", "options": obj{value: obj{"text": text, "color": color, "index": 0}}}
}

func sized(p *panel, w, h int) *panel {
	p.w, p.h = w, h
	return p
}
