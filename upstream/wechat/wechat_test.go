package wechat_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechattest"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "wx-s3cr3t-value"
)

var shanghai, _ = time.LoadLocation("Asia/Shanghai")

// The bubble starts Saturday 2000-01-01 08:00 Shanghai.
var week = calendar.Date{Year: 1999, Month: 12, Day: 20}

func newClient(t *testing.T, f *wechattest.Server, mode wechat.TokenMode, tokenFile string, obs *upstreamtest.Observer) *wechat.Client {
	t.Helper()
	opts := wechat.Options{BaseURL: "https://api.weixin.test", AppID: appID, Secret: secret, Mode: mode, TokenFile: tokenFile,
		HTTP: upstreamtest.Client(f), RateLimit: 1000, Location: shanghai}
	if obs != nil {
		opts.Observer = obs
	}
	c, err := wechat.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStableNeverCallsClassicToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := wechattest.New(appID, secret)
		c := newClient(t, f, wechat.TokenStable, "", nil)
		ctx := context.Background()
		for i := range 30 {
			if _, err := c.Retain(ctx, wechat.Weekly, week); err != nil {
				t.Fatal(err)
			}
			if i == 10 {
				f.RevokeTokens()
			}
			time.Sleep(20 * time.Minute) // 10 hours: several expiries
		}
		if n := f.CallCount(wechat.ClassicTokenPath); n != 0 {
			t.Errorf("/cgi-bin/token called %d times in stable mode", n)
		}
		if n := f.CallCount(wechat.StableTokenPath); n < 5 || n > 8 {
			t.Errorf("stable_token called %d times over 10 h (2 h tokens, one revocation)", n)
		}
		for _, call := range f.Calls() {
			if call.Path == wechat.StableTokenPath && strings.Contains(call.Body, `"force_refresh":true`) {
				t.Errorf("force refresh without need: %s", call.Body)
			}
		}
	})
}

// A stable token rejected even after a fresh fetch is force-refreshed, at
// most 20 times a day and 30 s apart.
func TestStableForceRefreshBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := wechattest.New(appID, secret)
		c := newClient(t, f, wechat.TokenStable, "", nil)
		ctx := context.Background()
		reject := wechattest.Fault{Code: 40001, Msg: "invalid credential, access_token is invalid or not latest"}
		forces := func() int {
			n := 0
			for _, call := range f.Calls() {
				if strings.Contains(call.Body, `"force_refresh":true`) {
					n++
				}
			}
			return n
		}
		f.Inject(wechat.WeeklyPath, reject, reject)
		if _, err := c.Retain(ctx, wechat.Weekly, week); err != nil {
			t.Fatalf("after a force refresh the call must succeed: %v", err)
		}
		if forces() != 1 {
			t.Fatalf("%d force refreshes, want 1", forces())
		}
		// Within 30 s: no second force refresh; the error says why.
		time.Sleep(10 * time.Second)
		f.Inject(wechat.WeeklyPath, reject, reject)
		_, err := c.Retain(ctx, wechat.Weekly, week)
		if e, ok := apicall.AsError(err); !ok || e.Reason != apicall.ReasonToken || !strings.Contains(e.Msg, "force refresh budget") {
			t.Fatalf("err = %v", err)
		}
		if forces() != 1 {
			t.Fatalf("force refresh within 30 s")
		}
		// 20 a day: 19 more succeed 31 s apart, the 21st is refused.
		for i := range 20 {
			time.Sleep(31 * time.Second)
			f.Inject(wechat.WeeklyPath, reject, reject)
			_, err := c.Retain(ctx, wechat.Weekly, week)
			if i < 19 && err != nil {
				t.Fatalf("force %d: %v", i+2, err)
			}
			if i == 19 && err == nil {
				t.Fatal("a 21st force refresh in one day")
			}
		}
		if forces() != 20 {
			t.Errorf("%d force refreshes, want 20", forces())
		}
	})
}

func TestClassicMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := wechattest.New(appID, secret)
		c := newClient(t, f, wechat.TokenClassic, "", nil)
		if _, err := c.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatal(err)
		}
		if f.CallCount(wechat.ClassicTokenPath) != 1 || f.CallCount(wechat.StableTokenPath) != 0 {
			t.Errorf("classic mode token calls: %v", f.Calls())
		}
		// The fake's classic semantics: a new fetch (by another service)
		// leaves the old token 5 minutes, then it is rejected and refetched.
		other := newClient(t, f, wechat.TokenClassic, "", nil)
		if _, err := other.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Minute)
		if _, err := c.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatal(err)
		}
		if n := f.CallCount(wechat.ClassicTokenPath); n != 3 {
			t.Errorf("classic token calls %d, want 3", n)
		}
	})
}

func TestFileModeReadsFileAndNeverFetches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := wechattest.New(appID, secret)
		// Another service owns the token: it fetched a stable one.
		owner := newClient(t, f, wechat.TokenStable, "", nil)
		if _, err := owner.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatal(err)
		}
		var stable string
		for _, call := range f.Calls() {
			if call.Path == wechat.WeeklyPath {
				stable = call.Token
			}
		}
		file := filepath.Join(t.TempDir(), "token")
		_ = os.WriteFile(file, []byte(stable+"\n"), 0o600)
		f.ResetCalls()
		c := newClient(t, f, wechat.TokenFile, file, nil)
		if _, err := c.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatal(err)
		}
		// The owner rotates the token; the old one is rejected, the file re-read.
		f.RevokeTokens()
		if _, err := owner.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatal(err)
		}
		var rotated string
		for _, call := range f.Calls() {
			if call.Path == wechat.WeeklyPath {
				rotated = call.Token
			}
		}
		_ = os.WriteFile(file, []byte(rotated), 0o600)
		if _, err := c.Retain(context.Background(), wechat.Weekly, week); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
		if n := f.CallCount(wechat.StableTokenPath) + f.CallCount(wechat.ClassicTokenPath); n != 1 {
			t.Errorf("%d token fetches; only the owner's one is allowed", n)
		}
		// A stale file that is rejected fails with reason token.
		f.RevokeTokens()
		_, err := c.Retain(context.Background(), wechat.Weekly, week)
		if e, ok := apicall.AsError(err); !ok || e.Reason != apicall.ReasonToken {
			t.Errorf("stale file: %v", err)
		}
		_ = os.Remove(file)
		_, err = c.Retain(context.Background(), wechat.Weekly, week)
		if e, ok := apicall.AsError(err); !ok || e.Reason != apicall.ReasonToken || strings.Contains(err.Error(), rotated) {
			t.Errorf("missing file: %v", err)
		}
	})
}

// Every errcode of the table in UPSTREAM_NOTES.md.
func TestErrcodeTable(t *testing.T) {
	nextMidnight := time.Date(2000, 1, 2, 0, 0, 0, 0, shanghai)
	cases := []struct {
		code       int
		reason     string
		retryAfter time.Duration // from the call; 0: none; -1: next midnight
		calls      int           // retain calls made
		msg        string
	}{
		{-1, apicall.ReasonAPIError, 0, 1, "system busy"},
		{40001, apicall.ReasonToken, 0, 3, "rejected even after a forced refresh"},
		{40014, apicall.ReasonToken, 0, 3, ""},
		{42001, apicall.ReasonToken, 0, 3, ""},
		{40013, apicall.ReasonConfig, time.Hour, 1, "configuration problem"},
		{40164, apicall.ReasonConfig, time.Hour, 1, "IP whitelist"},
		{45009, apicall.ReasonQuota, -1, 1, "daily quota"},
		{45011, apicall.ReasonQuota, time.Minute, 1, "per-minute quota"},
		{48001, apicall.ReasonConfig, time.Hour, 1, "authorization"},
		{61500, apicall.ReasonAPIError, 0, 1, "this is a bug"},
		{61501, apicall.ReasonAPIError, 0, 1, "this is a bug"},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := wechattest.New(appID, secret)
				obs := &upstreamtest.Observer{}
				c := newClient(t, f, wechat.TokenStable, "", obs)
				fault := wechattest.Fault{Code: tc.code, Msg: "upstream says"}
				f.Inject(wechat.WeeklyPath, fault, fault, fault)
				now := time.Now()
				_, err := c.Retain(context.Background(), wechat.Weekly, week)
				e, ok := apicall.AsError(err)
				if !ok || e.Reason != tc.reason || e.APICode != tc.code || !strings.Contains(e.Msg, tc.msg) {
					t.Fatalf("err = %#v", err)
				}
				switch {
				case tc.retryAfter == -1 && !e.RetryAfter.Equal(nextMidnight):
					t.Errorf("RetryAfter %s, want next midnight", e.RetryAfter)
				case tc.retryAfter > 0 && e.RetryAfter.Sub(now) != tc.retryAfter:
					t.Errorf("RetryAfter in %s, want %s", e.RetryAfter.Sub(now), tc.retryAfter)
				case tc.retryAfter == 0 && !e.RetryAfter.IsZero():
					t.Errorf("unexpected RetryAfter")
				}
				if n := f.CallCount(wechat.WeeklyPath); n != tc.calls {
					t.Errorf("%d retain calls, want %d (no hot loop)", n, tc.calls)
				}
				if strings.Contains(err.Error(), secret) {
					t.Error("secret in error")
				}
			})
		})
	}
}

func TestNotPublishedIsEmptyNotError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := wechattest.New(appID, secret)
		f.PublishDelay = 10 * time.Hour // the week of 12-27 ends Sunday; Saturday it does not exist
		c := newClient(t, f, wechat.TokenStable, "", nil)
		time.Sleep(time.Until(time.Date(2000, 1, 3, 9, 0, 0, 0, shanghai)))
		r, err := c.Retain(context.Background(), wechat.Weekly, calendar.Date{Year: 1999, Month: 12, Day: 27})
		if err != nil || !r.Empty() {
			t.Fatalf("before publication: %+v, %v", r, err)
		}
		time.Sleep(2 * time.Hour)
		r, err = c.Retain(context.Background(), wechat.Weekly, calendar.Date{Year: 1999, Month: 12, Day: 27})
		if err != nil || !r.Has(0) || r.Has(1) || r.RefDate != "19991227-20000102" {
			t.Fatalf("after publication: %+v, %v", r, err)
		}
	})
}

func TestWrongRefDateIsRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := wechattest.New(appID, secret)
		c := newClient(t, f, wechat.TokenStable, "", nil)
		f.Inject(wechat.WeeklyPath, wechattest.Fault{Body: `{"ref_date":"19991213-19991219","visit_uv_new":[{"key":0,"value":5}],"visit_uv":[]}`})
		_, err := c.Retain(context.Background(), wechat.Weekly, week)
		if e, ok := apicall.AsError(err); !ok || e.Reason != apicall.ReasonInvalidResponse {
			t.Fatalf("err = %v", err)
		}
	})
}
