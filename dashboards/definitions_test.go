package dashboards

// The shipped dashboards. Daily data is drawn with
// last_over_time(...[$__interval]) and a panel min interval of one period
// (1d, 7d, 31d), so that a panel reads the same from live series, where
// the value repeats every scrape, and from backfilled history, where there
// is one sample per period.

const (
	wshotoSel  = `corp="$corp", tag_name=~"$tag"`
	appSel     = `app="$app", cohort=~"$cohort"`
	targetSel  = `source=~"$source", target=~"$target"`
	retainDesc = "Each key comes from the newest cohort that has it: key k is published only after k periods have passed, so the keys of one curve belong to different cohorts (see the cohort start panel)."
)

var definitions = map[string]*dashboard{
	"wshoto-group-customers.json": wshotoDashboard(),
	"miniprogram-retention.json":  miniprogramDashboard(),
	"exporter-health.json":        healthDashboard(),
}

func wshotoDashboard() *dashboard {
	ratioTable := table("Tags: latest values",
		"One row per selected tag with the values of the newest data day. Click a column header to sort.",
		"short",
		obj{"tag_id": "Tag ID", "tag_name": "Tag", "Value #A": "Customers", "Value #B": "Distinct customers",
			"Value #C": "Joined", "Value #D": "Left", "Value #E": "Retention 7d", "Value #F": "Retention 30d"},
		nil,
		tableOf(`max by (tag_id, tag_name) (wshoto_group_customers{`+wshotoSel+`})`),
		tableOf(`max by (tag_id, tag_name) (wshoto_group_distinct_customers{`+wshotoSel+`})`),
		tableOf(`max by (tag_id, tag_name) (wshoto_group_joined_customers{`+wshotoSel+`})`),
		tableOf(`max by (tag_id, tag_name) (wshoto_group_left_customers{`+wshotoSel+`})`),
		tableOf(`max by (tag_id, tag_name) (wshoto_group_customer_retention_ratio{`+wshotoSel+`, window="7d"})`),
		tableOf(`max by (tag_id, tag_name) (wshoto_group_customer_retention_ratio{`+wshotoSel+`, window="30d"})`),
	)
	ratioTable.overrides = []obj{
		unitOverride("Retention 7d", "percentunit"),
		unitOverride("Retention 30d", "percentunit"),
	}
	return &dashboard{
		uid: "wre-wshoto-group-customers", title: "WeCom group customers by tag",
		description: "Daily WeCom group customer statistics per group tag from the wshoto (企微管家) open API, published T+1.",
		timeFrom:    "now-90d",
		vars: []obj{
			queryVar("corp", "Corp", "label_values(wshoto_group_stats_date_timestamp_seconds, corp)", false),
			queryVar("tag", "Tag", `label_values(wshoto_group_customers{corp="$corp"}, tag_name)`, true),
			customVar("window", "Retention window", []string{"24h", "7d", "15d", "30d", "all"}),
		},
		panels: []*panel{
			stat("Data day", "The day the values below describe (ds), as 00:00 of that day in the exporter's time zone. Normally yesterday: wshoto publishes T+1.",
				"dateTimeAsIso", 6, latest(`wshoto_group_stats_date_timestamp_seconds{corp="$corp"} * 1000`, "{{corp}}")),
			withThresholds(stat("Data age", "Time since the start of the data day served. Between 1 and 2 days is normal (T+1); above 2 days and 8 hours the day's data is late.",
				"s", 6, latest(`time() - wshoto_group_stats_date_timestamp_seconds{corp="$corp"}`, "{{corp}}")),
				"green", 201600, "red"),
			stat("Tags reporting", "Number of tags with data on the data day.", "short", 6,
				latest(`count(wshoto_group_customers{corp="$corp"})`, "tags")),
			stat("Customers, selected tags", "Group customers summed over the selected tags. A customer in groups of several tags counts once per tag.",
				"short", 6, latest(`sum(wshoto_group_customers{`+wshotoSel+`})`, "customers")),
			timeseries("Group customers per tag", "Customers in groups with the tag (total_customer_cnt), one point per data day.",
				"short", "1d", false, query(`last_over_time(wshoto_group_customers{`+wshotoSel+`}[$__interval])`, "{{tag_name}}")),
			timeseries("Distinct group customers per tag", "Distinct customers in groups with the tag (total_distinct_customer_cnt): a customer in two groups counts once.",
				"short", "1d", false, query(`last_over_time(wshoto_group_distinct_customers{`+wshotoSel+`}[$__interval])`, "{{tag_name}}")),
			timeseries("Joined vs left per data day", "Customers who joined (up) and left (down) groups with the tag, as the upstream reports them for each data day (total_new_customer_cnt, total_loss_customer_cnt).",
				"short", "1d", true,
				query(`last_over_time(wshoto_group_joined_customers{`+wshotoSel+`}[$__interval])`, "{{tag_name}} joined"),
				query(`-last_over_time(wshoto_group_left_customers{`+wshotoSel+`}[$__interval])`, "{{tag_name}} left")),
			timeseries("Distinct joined vs left per data day", "Distinct customers who joined (up) and left (down), as the upstream reports them for each data day.",
				"short", "1d", true,
				query(`last_over_time(wshoto_group_distinct_joined_customers{`+wshotoSel+`}[$__interval])`, "{{tag_name}} joined"),
				query(`-last_over_time(wshoto_group_distinct_left_customers{`+wshotoSel+`}[$__interval])`, "{{tag_name}} left")),
			timeseries("Retention ratio by window", "Share of group customers retained after each window (24h, 7d, 15d, 30d, all), per data day.",
				"percentunit", "1d", false,
				query(`last_over_time(wshoto_group_customer_retention_ratio{`+wshotoSel+`, window=~"$window"}[$__interval])`, "{{tag_name}} {{window}}")),
			bars("Latest retention ratio", "Retention ratio of each selected tag and window on the newest data day.", "percentunit",
				latest(`wshoto_group_customer_retention_ratio{`+wshotoSel+`, window=~"$window"}`, "{{tag_name}} {{window}}")),
			ratioTable,
		},
	}
}

func miniprogramDashboard() *dashboard {
	kindRow := func(kind, period, interval, keys string, curveKeys string) []*panel {
		prefix := "wechat_miniprogram_" + kind + "_retain_"
		return []*panel{
			row(titleCase(kind)+" retain", "Natural "+period+"s in the configured time zone. "+rowNote(kind)),
			stat("Newest "+period, "Start of the newest complete "+period+" (the key-0 cohort).",
				"dateTimeAsIso", 8, latest(prefix+`cohort_start_timestamp_seconds{app="$app", key="0"} * 1000`, "{{app}}")),
			stat("Users of the newest "+period, "Key 0: new (visit_uv_new) and active (visit_uv) users of the newest complete "+period+".",
				"short", 8, latest(prefix+`users{`+appSel+`, key="0"}`, "{{cohort}}")),
			stat("Retained one "+period+" later", "Key-1 users divided by key-0 users of the newest "+period+" that has key 1.",
				"percentunit", 8, latest(prefix+`ratio{`+appSel+`, key="1"}`, "{{cohort}}")),
			timeseries("Cohort size per "+period, "Key 0 of each "+period+": the cohort's new and active users.",
				"short", interval, true, query(`last_over_time(`+prefix+`users{`+appSel+`, key="0"}[$__interval])`, "{{cohort}}")),
			bars("Retention curve", "Key-k ratio of the newest cohorts, one bar per key. "+retainDesc, "percentunit",
				latest(prefix+`ratio{`+appSel+`, key=~"`+curveKeys+`"}`, "{{cohort}} +{{key}}")),
			sized(timeseries("Retention ratio per key", "The key-k ratio over time: each point is the newest cohort that had key k then. "+retainDesc,
				"percentunit", interval, false, query(`last_over_time(`+prefix+`ratio{`+appSel+`, key=~"`+keys+`"}[$__interval])`, "{{cohort}} +{{key}}")), 24, 8),
		}
	}
	var panels []*panel
	panels = append(panels, kindRow("weekly", "week", "7d", "1|2|3|4", "1|2|3|4")...)
	panels = append(panels, kindRow("daily", "day", "1d", "1|7|14|30", "1|2|3|4|5|6|7|14|30")...)
	panels = append(panels, kindRow("monthly", "month", "31d", "1", "1")...)
	return &dashboard{
		uid: "wre-miniprogram-retention", title: "Mini-program retention",
		description: "WeChat mini-program visit retention by natural-week cohort (getWeeklyRetain), with the daily and monthly retain when enabled.",
		timeFrom:    "now-180d",
		vars: []obj{
			queryVar("app", "App", `label_values({__name__=~"wechat_miniprogram_(daily|weekly|monthly)_retain_users"}, app)`, false),
			customVar("cohort", "Cohort", []string{"new", "active"}),
		},
		panels: panels,
	}
}

func rowNote(kind string) string {
	if kind == "weekly" {
		return "Published the Monday after the week, usually in the morning (China time)."
	}
	return "Opt-in: shows data only when the app's retain list includes " + kind + "."
}

func titleCase(s string) string { return string(s[0]-'a'+'A') + s[1:] }

func healthDashboard() *dashboard {
	return &dashboard{
		uid: "wre-exporter-health", title: "WeChat retention exporter health",
		description: "Per-target refreshes, data age, upstream calls and tokens of wechat_retention_exporter.",
		timeFrom:    "now-7d",
		vars: []obj{
			queryVar("source", "Source", "label_values(wechat_retention_exporter_last_refresh_success, source)", true),
			queryVar("target", "Target", `label_values(wechat_retention_exporter_last_refresh_success{source=~"$source"}, target)`, true),
		},
		panels: []*panel{
			withMappings(withThresholds(stat("Last refresh", "Whether the target's last refresh succeeded. A failed refresh keeps serving the last good data.",
				"none", 8, latest(`wechat_retention_exporter_last_refresh_success{`+targetSel+`}`, "{{source}} {{target}}")),
				"red", 1, "green"),
				valueText("1", "OK", "green"), valueText("0", "FAILING", "red")),
			stat("Time since last successful refresh", "A target refreshes only when new data can exist (once a day for wshoto, once a week for weekly retain), so hours or days are normal.",
				"s", 8, latest(`time() - wechat_retention_exporter_last_refresh_success_timestamp_seconds{`+targetSel+`}`, "{{source}} {{target}}")),
			stat("Data age", "Time since the start of the period served: the wshoto data day (normal: 1-2 days) and each retain kind's newest cohort (weekly: 7-14 days).",
				"s", 8,
				latest(`time() - wshoto_group_stats_date_timestamp_seconds{corp=~"$target"}`, "{{corp}} wshoto"),
				latest(`time() - label_replace({__name__=~"wechat_miniprogram_(daily|weekly|monthly)_retain_cohort_start_timestamp_seconds", app=~"$target", key="0"}, "kind", "$1", "__name__", "wechat_miniprogram_(.+)_retain_cohort_start_timestamp_seconds")`, "{{app}} {{kind}}")),
			timeseries("Upstream calls by endpoint and code", "Upstream HTTP calls per interval; code is the API's code (0 = success), http_NNN, network or invalid_response.",
				"short", "1m", true, query(`sum by (target, endpoint, code) (increase(wechat_retention_exporter_upstream_requests_total{`+targetSel+`}[$__interval]))`, "{{target}} {{endpoint}} {{code}}")),
			timeseries("Refresh errors by reason", "Failed refreshes per interval by cause. Every reason has a series from the start, at zero.",
				"short", "1m", true, query(`sum by (target, reason) (increase(wechat_retention_exporter_refresh_errors_total{`+targetSel+`}[$__interval]))`, "{{target}} {{reason}}")),
			timeseries("Upstream latency", "95th and 50th percentile of upstream call duration per endpoint, body read included. Empty while no calls are made.",
				"s", "1m", false,
				query(`histogram_quantile(0.95, sum by (le, target, endpoint) (rate(wechat_retention_exporter_upstream_request_duration_seconds_bucket{`+targetSel+`}[$__rate_interval])))`, "p95 {{target}} {{endpoint}}"),
				query(`histogram_quantile(0.5, sum by (le, target, endpoint) (rate(wechat_retention_exporter_upstream_request_duration_seconds_bucket{`+targetSel+`}[$__rate_interval])))`, "p50 {{target}} {{endpoint}}")),
			timeseries("Token fetches", "Access-token fetches per interval by result. Tokens are cached: a few per day is normal.",
				"short", "1m", true, query(`sum by (target, result) (increase(wechat_retention_exporter_token_refreshes_total{`+targetSel+`}[$__interval]))`, "{{target}} {{result}}")),
			withMappings(withThresholds(stat("Config reload", "Whether the last configuration reload (SIGHUP or POST /-/reload) succeeded. A failed reload keeps the previous configuration running.",
				"none", 6, latest(`wechat_retention_exporter_config_last_reload_successful`, "{{instance}}")),
				"red", 1, "green"),
				valueText("1", "OK", "green"), valueText("0", "FAILED", "red")),
			stat("Last successful reload", "When the configuration was last loaded successfully.", "dateTimeAsIso", 6,
				latest(`wechat_retention_exporter_config_last_reload_success_timestamp_seconds * 1000`, "{{instance}}")),
			sized(table("Build", "Version of each exporter instance.", "none",
				obj{"version": "Version", "revision": "Revision", "goversion": "Go", "instance": "Instance"},
				[]string{"Value", "job", "branch", "tags", "goarch", "goos"},
				tableOf(`wechat_retention_exporter_build_info`)), 12, 4),
		},
	}
}
