package source

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"go.yaml.in/yaml/v3"

	"github.com/wechat-retention/wechat_retention_exporter/config"
	"github.com/wechat-retention/wechat_retention_exporter/scheduler"
	"github.com/wechat-retention/wechat_retention_exporter/state"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

// Deps are what units need from outside the configuration.
type Deps struct {
	Logger *slog.Logger
	// Existing returns the state of a target that is already live, so a
	// reload keeps its data and counters; nil for none.
	Existing func(source, name string) *state.Target
	// HTTPClient, when set, replaces the client built from http_client
	// (tests use an in-memory transport).
	HTTPClient func(name string) *http.Client
	// Policy, when set, replaces the policy built from the configuration.
	Policy func(poll time.Duration) scheduler.Policy
	// Publications, when set, remembers when each target's data were
	// published, across reloads (and restarts, with a file).
	Publications *scheduler.Store
}

// Units builds one scheduler unit per configured target.
func Units(cfg *config.Config, d Deps) ([]scheduler.Unit, error) {
	loc := cfg.Global.Location
	var units []scheduler.Unit
	for _, tc := range cfg.Wshoto {
		t := d.target(state.SourceWshoto, tc.Name, loc)
		client, err := d.WshotoClient(tc, t)
		if err != nil {
			return nil, err
		}
		t.InitEndpoints(wshoto.TokenEndpoint, wshoto.AnalyzeEndpoint)
		logger := d.Logger.With("upstream", state.SourceWshoto, "target", tc.Name)
		units = append(units, scheduler.Unit{
			Target: t,
			Job: &WshotoJob{Client: client, TagIDs: tc.TagIDs, Location: loc,
				LookbackDays: tc.LookbackDays, Target: t, Logger: logger},
			Policy:      d.policy(state.SourceWshoto, tc.Name, time.Duration(tc.PollInterval)),
			Logger:      logger,
			Fingerprint: fingerprint(cfg.Global.Timezone, tc, tc.Secret()),
		})
	}
	for _, tc := range cfg.WechatMiniprogram {
		t := d.target(state.SourceMiniprogram, tc.Name, loc)
		client, err := d.MiniprogramClient(tc, loc, t)
		if err != nil {
			return nil, err
		}
		kinds := Kinds(tc)
		t.InitEndpoints(wechat.Endpoints(wechat.TokenMode(tc.Token), kinds)...)
		logger := d.Logger.With("upstream", state.SourceMiniprogram, "target", tc.Name)
		units = append(units, scheduler.Unit{
			Target: t,
			Job: &MiniprogramJob{Client: client, AppID: tc.AppID, Kinds: kinds, Location: loc,
				Target: t, Logger: logger},
			Policy:      d.policy(state.SourceMiniprogram, tc.Name, time.Duration(tc.PollInterval)),
			Logger:      logger,
			Fingerprint: fingerprint(cfg.Global.Timezone, tc, tc.Secret()),
		})
	}
	return units, nil
}

// WshotoClient builds the client of a wshoto target; obs sees its calls.
func (d Deps) WshotoClient(tc *config.WshotoTarget, obs apicall.Observer) (*wshoto.Client, error) {
	hc, err := d.httpClient(state.SourceWshoto+"/"+tc.Name, tc.HTTPClient, time.Duration(tc.Timeout))
	if err != nil {
		return nil, fmt.Errorf("wshoto %s: %w", tc.Name, err)
	}
	client, err := wshoto.New(wshoto.Options{
		BaseURL: tc.BaseURL, AppID: tc.AppID, AppSecret: tc.Secret(), HTTP: hc,
		RateLimit: tc.RateLimit, Observer: obs, PageSize: tc.PageSize, BatchSize: tc.TagBatchSize,
	})
	if err != nil {
		return nil, fmt.Errorf("wshoto %s: %w", tc.Name, err)
	}
	return client, nil
}

// MiniprogramClient builds the client of a mini-program target.
func (d Deps) MiniprogramClient(tc *config.MiniprogramTarget, loc *time.Location, obs apicall.Observer) (*wechat.Client, error) {
	hc, err := d.httpClient(state.SourceMiniprogram+"/"+tc.Name, tc.HTTPClient, time.Duration(tc.Timeout))
	if err != nil {
		return nil, fmt.Errorf("wechat_miniprogram %s: %w", tc.Name, err)
	}
	client, err := wechat.New(wechat.Options{
		BaseURL: tc.BaseURL, AppID: tc.AppID, Secret: tc.Secret(), Mode: wechat.TokenMode(tc.Token),
		TokenFile: tc.AccessTokenFile, HTTP: hc, RateLimit: tc.RateLimit, Observer: obs, Location: loc,
	})
	if err != nil {
		return nil, fmt.Errorf("wechat_miniprogram %s: %w", tc.Name, err)
	}
	return client, nil
}

// Kinds are the retain kinds a mini-program target enables.
func Kinds(tc *config.MiniprogramTarget) []wechat.Kind {
	var kinds []wechat.Kind
	for _, r := range tc.Retain {
		if k, ok := wechat.ParseKind(r); ok {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

func (d Deps) target(source, name string, loc *time.Location) *state.Target {
	if d.Existing != nil {
		if t := d.Existing(source, name); t != nil {
			t.SetLocation(loc)
			return t
		}
	}
	return state.NewTarget(source, name, loc)
}

func (d Deps) httpClient(name string, cfg commoncfg.HTTPClientConfig, timeout time.Duration) (*http.Client, error) {
	if d.HTTPClient != nil {
		return d.HTTPClient(name), nil
	}
	c, err := commoncfg.NewClientFromConfig(cfg, name)
	if err != nil {
		return nil, err
	}
	c.Timeout = timeout
	return c, nil
}

func (d Deps) policy(source, name string, poll time.Duration) scheduler.Policy {
	p := scheduler.DefaultPolicy(poll)
	if d.Policy != nil {
		p = d.Policy(poll)
	}
	if d.Publications != nil && p.Learn == nil {
		p.Learn = d.Publications.For(source + "/" + name)
	}
	return p
}

// fingerprint identifies a target's configuration, secret included (hashed),
// so a reload restarts exactly the targets whose settings changed.
func fingerprint(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		b, err := yaml.Marshal(p)
		if err != nil {
			b = fmt.Appendf(nil, "%v", p)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
