package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestLoadGood(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Global.Location.String(); got != "Asia/Shanghai" {
		t.Errorf("location = %s", got)
	}
	acme, beta := cfg.Wshoto[0], cfg.Wshoto[1]
	if acme.BaseURL != DefaultWshotoBaseURL || acme.TagBatchSize != DefaultTagBatchSize ||
		acme.PageSize != DefaultPageSize || acme.PollInterval != DefaultPollInterval ||
		acme.RateLimit != DefaultRateLimit || acme.LookbackDays != DefaultLookbackDays {
		t.Errorf("defaults not applied: %+v", acme)
	}
	if !acme.HTTPClient.FollowRedirects {
		t.Errorf("http_client defaults not applied")
	}
	if acme.Secret() != "s3cr3t-inline" {
		t.Errorf("inline secret not resolved")
	}
	if beta.Secret() != "file-secret-value" {
		t.Errorf("secret file not read (trimmed): %q", beta.Secret())
	}
	if beta.TagBatchSize != 50 || time.Duration(beta.PollInterval) != 5*time.Minute || beta.RateLimit != 2 {
		t.Errorf("explicit values lost: %+v", beta)
	}
	if beta.HTTPClient.ProxyURL.URL == nil || beta.HTTPClient.ProxyURL.Host != "proxy.internal:3128" {
		t.Errorf("http_client.proxy_url not decoded")
	}
}

func TestLoadMiniprogram(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	shop, mall := cfg.WechatMiniprogram[0], cfg.WechatMiniprogram[1]
	if shop.BaseURL != DefaultWechatBaseURL || shop.Token != "stable" || len(shop.Retain) != 1 || shop.Retain[0] != "weekly" || shop.Secret() != "mp-secret-inline" {
		t.Errorf("defaults: %+v", shop)
	}
	if mall.Token != "file" || mall.AccessTokenFile != "testdata/secret.txt" || len(mall.Retain) != 3 || time.Duration(mall.PollInterval) != 30*time.Minute {
		t.Errorf("explicit: %+v", mall)
	}
}

func TestLoadDefaultsTimezone(t *testing.T) {
	cfg, err := Parse("x.yml", []byte("wshoto:\n  - {name: a, appid: b, app_secret: c, tag_ids: [d]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Global.Location.String() != DefaultTimezone {
		t.Errorf("timezone default = %s", cfg.Global.Location)
	}
}

// Each bad file must produce exactly these problems, in this order.
func TestLoadBad(t *testing.T) {
	cases := map[string][]string{
		"unknown_key":         {"unknown_key.bad.yml:2: wshoto[0].tag_ids: required: list at least one tag id", "unknown_key.bad.yml:5: wshoto[0].tag_idz: unknown key"},
		"unknown_top":         {"unknown_top.bad.yml:1: globl: unknown key"},
		"duplicate_name":      {`duplicate_name.bad.yml:6: wshoto[1].name: duplicate name "acme" (first used at line 2)`},
		"missing_secret":      {"missing_secret.bad.yml:2: wshoto[0]: one of app_secret or app_secret_file is required"},
		"both_secrets":        {"both_secrets.bad.yml:5: wshoto[0].app_secret_file: set either app_secret or app_secret_file, not both"},
		"secret_file_missing": {"secret_file_missing.bad.yml:4: wshoto[0].app_secret_file: cannot read secret file: no such file or directory"},
		"empty_tags":          {"empty_tags.bad.yml:5: wshoto[0].tag_ids: required: list at least one tag id"},
		"bad_timezone":        {`bad_timezone.bad.yml:2: global.timezone: unknown time zone "Mars/Olympus"`},
		"bad_url":             {`bad_url.bad.yml:3: wshoto[0].base_url: "ftp://open.wshoto.com" is not an http(s) URL with a host`},
		"bad_type":            {"bad_type.bad.yml:6: wshoto[0].page_size: cannot unmarshal !!str `lots` into int"},
		"out_of_range": {
			`out_of_range.bad.yml:5: wshoto[0].tag_ids[2]: duplicate tag id "t1"`,
			"out_of_range.bad.yml:6: wshoto[0].page_size: 500 is out of range [1, 100]",
			"out_of_range.bad.yml:7: wshoto[0].poll_interval: 10s is too short: at least 1m (upstream quotas are shared)",
		},
		"no_targets":            {"no_targets.bad.yml: no targets: configure at least one entry under wshoto or wechat_miniprogram"},
		"syntax":                {"syntax.bad.yml:1: invalid YAML: did not find expected '-' indicator"},
		"mp_token_file_missing": {"mp_token_file_missing.bad.yml:2: wechat_miniprogram[0].access_token_file: required with token: file"},
		"mp_bad_token_mode":     {`mp_bad_token_mode.bad.yml:5: wechat_miniprogram[0].token: "refresh" is not one of stable, classic, file`},
		"mp_bad_retain": {
			`mp_bad_retain.bad.yml:6: wechat_miniprogram[0].retain[1]: "yearly" is not one of daily, weekly, monthly`,
			`mp_bad_retain.bad.yml:6: wechat_miniprogram[0].retain[2]: duplicate "weekly"`,
		},
		"mp_missing_secret": {"mp_missing_secret.bad.yml:2: wechat_miniprogram[0]: one of secret or secret_file is required"},
		"mp_duplicate_name": {`mp_duplicate_name.bad.yml:5: wechat_miniprogram[1].name: duplicate name "shop" (first used at line 2)`},
	}
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) != len(cases) {
		t.Errorf("%d bad files in testdata, %d cases: every file needs its expected messages", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", name+".bad.yml"))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			var got []string
			for _, p := range ps {
				p.File = filepath.Base(p.File)
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("problems:\n got: %q\nwant: %q", got, want)
			}
		})
	}
}

func TestSecretsNeverInMessages(t *testing.T) {
	// A secret that is also set as a file must not be echoed.
	_, err := Parse("x.yml", []byte("wshoto:\n  - {name: a, appid: b, app_secret: TOPSECRET, app_secret_file: /nope, tag_ids: []}\n"))
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("error leaks or is missing: %v", err)
	}
}

// However a loaded configuration is printed or marshalled, no secret shows.
func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{cfg.Wshoto[0].Secret(), cfg.Wshoto[1].Secret()}
	for _, m := range cfg.WechatMiniprogram {
		if m.Secret() != "" {
			secrets = append(secrets, m.Secret())
		}
	}
	y, _ := yaml.Marshal(cfg)
	j, _ := json.Marshal(cfg)
	outs := []string{string(y), string(j)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outs = append(outs, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, *cfg.Wshoto[0]), fmt.Sprintf(verb, cfg.Wshoto[0].AppSecret))
		for _, m := range cfg.WechatMiniprogram {
			outs = append(outs, fmt.Sprintf(verb, *m))
		}
	}
	for _, out := range outs {
		for _, s := range secrets {
			if s != "" && strings.Contains(out, s) {
				t.Fatalf("secret %q printed in:\n%s", s, out)
			}
		}
	}
	if got := fmt.Sprint(Secret("x"), " ", Secret("x").GoString()); got != `<secret> "<secret>"` {
		t.Errorf("Secret prints as %s", got)
	}
}
