package main

import (
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

// demo runs the simulated upstreams on loopback ports for --demo.
type demo struct {
	wshoto *httptest.Server
	wechat *httptest.Server
}

const (
	demoAppID  = "demo-appid"
	demoSecret = "demo-secret"
	demoWxApp  = "wxd0e1m2o3a4p5p6i7"
)

func startDemo() (*demo, error) {
	f := wshototest.New(demoAppID, demoSecret)
	w := wechattest.New(demoWxApp, demoSecret)
	return &demo{wshoto: f.Start(), wechat: w.Start()}, nil
}

func (d *demo) String() string {
	return fmt.Sprintf("wshoto at %s, wechat at %s", d.wshoto.URL, d.wechat.URL)
}

// Config is the configuration a user would write for the simulators; it
// goes through the same validation as a file.
func (d *demo) Config() (*config.Config, error) {
	var ids []string
	for _, t := range wshototest.DemoTags {
		ids = append(ids, fmt.Sprintf("%q", t.ID))
	}
	yml := fmt.Sprintf(`global:
  timezone: Asia/Shanghai
wshoto:
  - name: demo-corp
    base_url: %s
    appid: %s
    app_secret: %s
    tag_ids: [%s]
    poll_interval: 1m
wechat_miniprogram:
  - name: demo-shop
    base_url: %s
    appid: %s
    secret: %s
    retain: [daily, weekly, monthly]
    poll_interval: 1m
`, d.wshoto.URL, demoAppID, demoSecret, strings.Join(ids, ", "), d.wechat.URL, demoWxApp, demoSecret)
	return config.Parse("(demo)", []byte(yml))
}

func (d *demo) Close() {
	d.wshoto.Close()
	d.wechat.Close()
}
