package wshoto_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshototest"
)

const (
	appID  = "wsappid"
	secret = "s3cr3t-app-secret"
)

func newFake(n int) *wshototest.Server {
	f := wshototest.New(appID, secret)
	f.Tags = nil
	for i := range n {
		f.Tags = append(f.Tags, wshototest.Tag{ID: fmt.Sprintf("tag%02d", i), Name: fmt.Sprintf("标签%d", i)})
	}
	return f
}

func newClient(t *testing.T, f *wshototest.Server, batch, page int, obs apicall.Observer) *wshoto.Client {
	t.Helper()
	c, err := wshoto.New(wshoto.Options{
		BaseURL: "http://wshoto.test", AppID: appID, AppSecret: secret,
		HTTP: upstreamtest.Client(f), RateLimit: 1000, BatchSize: batch, PageSize: page, Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tagIDs(f *wshototest.Server) []string {
	var ids []string
	for _, tg := range f.Tags {
		ids = append(ids, tg.ID)
	}
	return ids
}

// Fake time starts at 2000-01-01 00:00 UTC, 08:00 in Shanghai: data up to
// 1999-12-31 is published.
var (
	dec29 = calendar.Date{Year: 1999, Month: 12, Day: 29}
	dec31 = calendar.Date{Year: 1999, Month: 12, Day: 31}
)

func TestPaginationAndBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(7)
		obs := &upstreamtest.Observer{}
		c := newClient(t, f, 3, 2, obs)
		recs, err := c.TagStats(context.Background(), tagIDs(f), dec29, dec31)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 21 {
			t.Fatalf("got %d records, want 7 tags × 3 days", len(recs))
		}
		// Batches of 3, 3 and 1 tags hold 9, 9 and 3 records: 5+5+2 pages.
		if got := f.CallCount(wshoto.AnalyzePath); got != 12 {
			t.Errorf("analysis calls = %d, want 12", got)
		}
		if got := f.CallCount(wshoto.TokenPath); got != 1 {
			t.Errorf("token calls = %d, want 1 (cached)", got)
		}
		for _, call := range f.Calls() {
			if call.Path != wshoto.AnalyzePath {
				continue
			}
			var body struct {
				TagIDs   []string `json:"tag_ids"`
				PageSize int      `json:"page_size"`
			}
			_ = json.Unmarshal([]byte(call.Body), &body)
			if len(body.TagIDs) > 3 || body.PageSize != 2 {
				t.Errorf("request exceeds batch or page size: %s", call.Body)
			}
		}
		first := recs[0]
		want := wshototest.DemoRecord(f.Tags[0], dec29)
		if first.TagID != "tag00" || first.TagName != "标签0" || first.Date != dec29 ||
			first.Customers.Value != float64(want["total_customer_cnt"].(int64)) || !first.Retention[0].Valid {
			t.Errorf("first record = %+v", first)
		}
		if obs.String() != "access_token 0=1;customer_group_analyze_by_tag_page 0=12;" || obs.Tokens[true] != 1 {
			t.Errorf("observations: %s %v", obs, obs.Tokens)
		}
	})
}

func TestLongRangeIsSplitIntoThreeMonthWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		c := newClient(t, f, 100, 100, nil)
		from := dec31.AddDays(-199)
		recs, err := c.TagStats(context.Background(), tagIDs(f), from, dec31)
		if err != nil {
			t.Fatal(err) // the fake rejects any window over 3 months
		}
		if len(recs) != 200 || recs[0].Date != from || recs[199].Date != dec31 {
			t.Errorf("got %d records from %v to %v", len(recs), recs[0].Date, recs[len(recs)-1].Date)
		}
		// 1999-06-15..09-14, 09-15..12-14, 12-15..12-31: one page each.
		if got := f.CallCount(wshoto.AnalyzePath); got != 3 {
			t.Errorf("analysis calls = %d, want 3 windows", got)
		}
	})
}

func TestTodayIsNotPublished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(2)
		c := newClient(t, f, 100, 100, nil)
		today := calendar.Date{Year: 2000, Month: 1, Day: 1}
		recs, err := c.TagStats(context.Background(), tagIDs(f), today, today)
		if err != nil || len(recs) != 0 {
			t.Fatalf("today: %d records, err %v; want none and no error", len(recs), err)
		}
	})
}

func TestTokenCachedUntilShortlyBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		c := newClient(t, f, 100, 100, nil)
		ctx := context.Background()
		fetch := func() {
			t.Helper()
			if _, err := c.TagStats(ctx, tagIDs(f), dec31, dec31); err != nil {
				t.Fatal(err)
			}
		}
		fetch()
		time.Sleep(110 * time.Minute)
		fetch()
		if n := f.CallCount(wshoto.TokenPath); n != 1 {
			t.Fatalf("token calls after 110 min = %d, want 1", n)
		}
		// Within the 5-minute margin before the 2 h expiry: fetch anew. The
		// fake answers with the same token, which is then used to its end.
		time.Sleep(6 * time.Minute)
		fetch()
		fetch()
		if n := f.CallCount(wshoto.TokenPath); n != 2 {
			t.Fatalf("token calls in the margin = %d, want 2", n)
		}
		time.Sleep(5 * time.Minute) // past the real expiry: a new token
		fetch()
		if n := f.CallCount(wshoto.TokenPath); n != 3 {
			t.Fatalf("token calls after expiry = %d, want 3", n)
		}
		for _, call := range f.Calls() {
			if call.Answer != 0 {
				t.Errorf("a call failed: %+v", call)
			}
		}
	})
}

func TestRevokedTokenIsFetchedAgainOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		obs := &upstreamtest.Observer{}
		c := newClient(t, f, 100, 100, obs)
		ctx := context.Background()
		if _, err := c.TagStats(ctx, tagIDs(f), dec31, dec31); err != nil {
			t.Fatal(err)
		}
		f.RevokeTokens()
		recs, err := c.TagStats(ctx, tagIDs(f), dec31, dec31)
		if err != nil || len(recs) != 1 {
			t.Fatalf("after revocation: %d records, %v", len(recs), err)
		}
		if want := "access_token 0=2;customer_group_analyze_by_tag_page 0=2;customer_group_analyze_by_tag_page 40014=1;"; obs.String() != want {
			t.Errorf("calls: %s, want %s", obs, want)
		}
	})
}

func TestTokenRejectedTwiceGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		c := newClient(t, f, 100, 100, nil)
		f.Inject(wshoto.AnalyzePath, wshototest.Fault{Code: 42001, Msg: "access_token expired"}, wshototest.Fault{Code: 42001, Msg: "access_token expired"})
		_, err := c.TagStats(context.Background(), tagIDs(f), dec31, dec31)
		e, ok := apicall.AsError(err)
		if !ok || e.APICode != 42001 || e.Reason != apicall.ReasonToken {
			t.Fatalf("err = %v", err)
		}
		if a, tk := f.CallCount(wshoto.AnalyzePath), f.CallCount(wshoto.TokenPath); a != 2 || tk != 2 {
			t.Errorf("analysis calls %d, token calls %d; want 2 and 2", a, tk)
		}
	})
}

func TestTokenMessageInChineseIsATokenError(t *testing.T) {
	err := &apicall.Error{Endpoint: wshoto.AnalyzeEndpoint, APICode: 10086, Msg: "code 10086: access_token已失效"}
	if !wshoto.IsTokenError(err) {
		t.Error("a message saying the token is invalid must count as a token error")
	}
	if wshoto.IsTokenError(&apicall.Error{Endpoint: wshoto.AnalyzeEndpoint, APICode: 500, Msg: "系统繁忙"}) {
		t.Error("an unrelated code is not a token error")
	}
}

func TestBadCredentialsAreATokenFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		f.AppSecret = "another"
		obs := &upstreamtest.Observer{}
		c := newClient(t, f, 100, 100, obs)
		_, err := c.TagStats(context.Background(), tagIDs(f), dec31, dec31)
		if e, ok := apicall.AsError(err); !ok || e.Reason != apicall.ReasonToken || e.APICode != 40013 {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), secret) || obs.Tokens[false] != 1 {
			t.Errorf("err %q, token failures %d", err, obs.Tokens[false])
		}
	})
}

func TestNumbersAsStringsNumbersAndNull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(2)
		f.Data = func(tg wshototest.Tag, d calendar.Date) map[string]any {
			m := wshototest.DemoRecord(wshototest.Tag{ID: "same"}, d)
			if tg.ID == "tag00" {
				m["total_customer_cnt"] = fmt.Sprint(m["total_customer_cnt"]) // "1234"
				m["s7d_total_stock_customer_rate"] = fmt.Sprint(m["s7d_total_stock_customer_rate"])
				m["s15d_total_stock_customer_rate"] = json.Number(m["s15d_total_stock_customer_rate"].(string))
				m["s30d_total_stock_customer_rate"] = nil
			}
			return m
		}
		c := newClient(t, f, 100, 100, nil)
		recs, err := c.TagStats(context.Background(), tagIDs(f), dec31, dec31)
		if err != nil || len(recs) != 2 {
			t.Fatal(recs, err)
		}
		a, b := recs[0], recs[1]
		if a.Customers != b.Customers || a.Retention[0] != b.Retention[0] || a.Retention[1] != b.Retention[1] || a.Retention[2] != b.Retention[2] {
			t.Errorf("strings and numbers decode differently:\n%+v\n%+v", a, b)
		}
		if a.Retention[3].Valid || !b.Retention[3].Valid {
			t.Errorf("null must be not valid: %+v", a.Retention[3])
		}
	})
}

func TestInconsistentPagesFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(3)
		c := newClient(t, f, 100, 2, nil)
		page2 := `{"code":0,"msg":"ok","data":{"total":5,"records":[]}}`
		f.Inject(wshoto.AnalyzePath, wshototest.Fault{}, wshototest.Fault{Body: page2})
		_, err := c.TagStats(context.Background(), tagIDs(f), dec31, dec31)
		if e, ok := apicall.AsError(err); !ok || e.Reason != apicall.ReasonInvalidResponse || !strings.Contains(err.Error(), "total changed from 3 to 5") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestErrorsAreTypedAndRedacted(t *testing.T) {
	cases := []struct {
		name   string
		fault  wshototest.Fault
		reason string
		code   string
	}{
		{"5xx", wshototest.Fault{Status: 500}, apicall.ReasonHTTP, "http_500"},
		{"html with 200", wshototest.Fault{Body: "<html><body>nginx error</body></html>"}, apicall.ReasonInvalidResponse, "invalid_response"},
		{"truncated json", wshototest.Fault{Body: `{"code":0,"msg":"ok","data":{"total":1,"rec`}, apicall.ReasonInvalidResponse, "invalid_response"},
		{"unknown code", wshototest.Fault{Code: 93001, Msg: "未知错误"}, apicall.ReasonAPIError, "93001"},
		{"wrong types", wshototest.Fault{Body: `{"code":0,"msg":"ok","data":{"total":"x","records":null}}`}, apicall.ReasonInvalidResponse, "invalid_response"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(1)
				obs := &upstreamtest.Observer{}
				c := newClient(t, f, 100, 100, obs)
				f.Inject(wshoto.AnalyzePath, tc.fault)
				_, err := c.TagStats(context.Background(), tagIDs(f), dec31, dec31)
				e, ok := apicall.AsError(err)
				if !ok || e.Reason != tc.reason || e.Code != tc.code {
					t.Fatalf("err = %#v", err)
				}
				if !strings.Contains(obs.String(), wshoto.AnalyzeEndpoint+" "+tc.code+"=1") {
					t.Errorf("observations %s lack code %s", obs, tc.code)
				}
				assertNoSecret(t, err.Error(), f)
			})
		})
	}
}

func TestNetworkErrorsRedactURL(t *testing.T) {
	f := newFake(1)
	srv := f.Start()
	c, err := wshoto.New(wshoto.Options{BaseURL: srv.URL, AppID: appID, AppSecret: secret, HTTP: &http.Client{Timeout: time.Second}, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // connection refused on the token call, whose URL holds app_secret
	_, err = c.TagStats(context.Background(), []string{"tag00"}, dec31, dec31)
	e, ok := apicall.AsError(err)
	if !ok || e.Reason != apicall.ReasonNetwork || e.Code != "network" {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), "app_secret=REDACTED") {
		t.Errorf("URL not kept in redacted form: %v", err)
	}
	assertNoSecret(t, err.Error(), f)
}

func assertNoSecret(t *testing.T, s string, f *wshototest.Server) {
	t.Helper()
	if strings.Contains(s, secret) {
		t.Errorf("app secret leaked: %s", s)
	}
	for _, c := range f.Calls() {
		if c.Token != "" && strings.Contains(s, c.Token) {
			t.Errorf("token leaked: %s", s)
		}
	}
}
