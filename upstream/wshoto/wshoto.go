// Package wshoto is a client of the wshoto (企微管家) open API: its access
// token and the group-customer analysis by tag. It returns plain records
// and knows nothing of Prometheus.
package wshoto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
)

// API paths and the endpoint labels of their calls.
const (
	TokenPath       = "/openapi/access_token"
	AnalyzePath     = "/openapi/chat/group/statistics/customer_group_analyze_by_tag_page"
	TokenEndpoint   = "access_token"
	AnalyzeEndpoint = "customer_group_analyze_by_tag_page"

	// MaxPageSize is the documented upper bound of page_size.
	MaxPageSize = 100
	// WindowMonths is the longest start..end range one request may span.
	WindowMonths = 3
	// DateLayout is the API's yyyy-MM-dd.
	DateLayout = time.DateOnly
)

// Retention windows in the order of Record.Retention.
var RetentionWindows = [...]string{"24h", "7d", "15d", "30d", "all"}

// Record is one tag's statistics for one day.
type Record struct {
	TagID   string
	TagName string
	Date    calendar.Date

	Customers         Number // total_customer_cnt
	DistinctCustomers Number // total_distinct_customer_cnt
	Joined            Number // total_new_customer_cnt
	DistinctJoined    Number // total_distinct_new_customer_cnt
	Left              Number // total_loss_customer_cnt
	DistinctLeft      Number // total_distinct_loss_customer_cnt
	// Retention by RetentionWindows: sd_, s7d_, s15d_, s30d_, total_stock_customer_rate.
	Retention [5]Number
}

// Number is a numeric field the API may send as a number, a string or null.
type Number = apicall.Number

type wireRecord struct {
	TagID                        string `json:"tag_id"`
	TagName                      string `json:"tag_name"`
	DS                           string `json:"ds"`
	TotalCustomerCnt             Number `json:"total_customer_cnt"`
	TotalDistinctCustomerCnt     Number `json:"total_distinct_customer_cnt"`
	TotalNewCustomerCnt          Number `json:"total_new_customer_cnt"`
	TotalDistinctNewCustomerCnt  Number `json:"total_distinct_new_customer_cnt"`
	TotalLossCustomerCnt         Number `json:"total_loss_customer_cnt"`
	TotalDistinctLossCustomerCnt Number `json:"total_distinct_loss_customer_cnt"`
	SD                           Number `json:"sd_total_stock_customer_rate"`
	S7D                          Number `json:"s7d_total_stock_customer_rate"`
	S15D                         Number `json:"s15d_total_stock_customer_rate"`
	S30D                         Number `json:"s30d_total_stock_customer_rate"`
	Total                        Number `json:"total_stock_customer_rate"`
}

func (w wireRecord) record() (Record, error) {
	if w.TagID == "" {
		return Record{}, errors.New("record without tag_id")
	}
	d, err := calendar.Parse(DateLayout, w.DS)
	if err != nil {
		return Record{}, fmt.Errorf("tag %s: %w", w.TagID, err)
	}
	return Record{
		TagID: w.TagID, TagName: w.TagName, Date: d,
		Customers: w.TotalCustomerCnt, DistinctCustomers: w.TotalDistinctCustomerCnt,
		Joined: w.TotalNewCustomerCnt, DistinctJoined: w.TotalDistinctNewCustomerCnt,
		Left: w.TotalLossCustomerCnt, DistinctLeft: w.TotalDistinctLossCustomerCnt,
		Retention: [5]Number{w.SD, w.S7D, w.S15D, w.S30D, w.Total},
	}, nil
}

// envelope is the shape of every answer: code 0 is success.
type envelope[T any] struct {
	Code *int   `json:"code"`
	Msg  string `json:"msg"`
	Data T      `json:"data"`
}

type page struct {
	Total   *int64       `json:"total"`
	Records []wireRecord `json:"records"`
}

type tokenData struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	CreateAt    int64  `json:"create_at"`
}

// Options configure a Client.
type Options struct {
	BaseURL   string
	AppID     string
	AppSecret string
	HTTP      *http.Client
	RateLimit float64 // calls per second, shared by every endpoint
	Observer  apicall.Observer
	PageSize  int // ≤ MaxPageSize
	BatchSize int // tag ids per request
	MaxBody   int64
}

// Client calls one wshoto corp. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	appID     string
	secret    string
	pageSize  int
	batchSize int
	caller    *apicall.Caller
	tokens    apicall.TokenCache
}

// New validates opts and returns a client.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("wshoto: base URL %q is not an http(s) URL", opts.BaseURL)
	}
	if opts.AppID == "" || opts.AppSecret == "" {
		return nil, errors.New("wshoto: appid and app secret are required")
	}
	if opts.PageSize <= 0 || opts.PageSize > MaxPageSize {
		opts.PageSize = MaxPageSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = 10
	}
	c := &Client{
		base: u, appID: opts.AppID, secret: opts.AppSecret,
		pageSize: opts.PageSize, batchSize: opts.BatchSize,
	}
	c.tokens.Fetch, c.tokens.Observer = c.fetchToken, opts.Observer
	c.caller = &apicall.Caller{
		HTTP: opts.HTTP, Limiter: apicall.NewLimiter(opts.RateLimit),
		Observer: opts.Observer, MaxBody: opts.MaxBody, Secrets: c.secrets,
		Retries: apicall.DefaultRetries, RetryWait: apicall.DefaultRetryWait,
	}
	return c, nil
}

func (c *Client) secrets() []string {
	return []string{c.secret, c.tokens.Current()}
}

func (c *Client) endpointURL(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *Client) fetchToken(ctx context.Context) (apicall.Token, error) {
	var td tokenData
	err := c.caller.Do(ctx, TokenEndpoint, func(ctx context.Context) (*http.Request, error) {
		q := url.Values{"appid": {c.appID}, "app_secret": {c.secret}}
		return http.NewRequestWithContext(ctx, http.MethodGet, c.endpointURL(TokenPath, q), nil)
	}, func(b []byte) error {
		var env envelope[tokenData]
		if err := decodeEnvelope(b, &env); err != nil {
			return err
		}
		if env.Data.AccessToken == "" || env.Data.ExpiresIn <= 0 {
			return errors.New("token answer without access_token or expires_in")
		}
		td = env.Data
		return nil
	})
	if err != nil {
		if e, ok := apicall.AsError(err); ok && e.APICode != 0 {
			e.Reason = apicall.ReasonToken
			e.Msg = "fetching access token: " + e.Msg
		}
		return apicall.Token{}, err
	}
	t := apicall.Token{Value: td.AccessToken, TTL: time.Duration(td.ExpiresIn) * time.Second}
	if td.CreateAt > 0 {
		t.Created = time.Unix(td.CreateAt, 0)
	}
	return t, nil
}

// tokenCodes are the codes that mean "this access token is not valid":
// the WeCom conventions, as wshoto does not publish its own.
var tokenCodes = []int{40001, 40014, 42001, 41001}

// IsTokenError reports whether err says the access token was rejected.
func IsTokenError(err error) bool {
	e, ok := apicall.AsError(err)
	if !ok || e.APICode == 0 || e.Endpoint == TokenEndpoint {
		return false
	}
	if slices.Contains(tokenCodes, e.APICode) {
		return true
	}
	m := strings.ToLower(e.Msg)
	return strings.Contains(m, "token") && (strings.Contains(m, "invalid") || strings.Contains(m, "expire") ||
		strings.Contains(m, "无效") || strings.Contains(m, "过期") || strings.Contains(m, "失效"))
}

// withToken runs call with a token; when the token is rejected it fetches
// a new one and runs call once more.
func (c *Client) withToken(ctx context.Context, call func(token string) error) error {
	tok, err := c.tokens.Get(ctx)
	if err != nil {
		return err
	}
	err = call(tok)
	if !IsTokenError(err) {
		return err
	}
	if tok, err = c.tokens.Renew(ctx, tok); err != nil {
		return err
	}
	if err = call(tok); IsTokenError(err) {
		return apicall.TokenRejected(err, "a freshly fetched token was rejected too")
	}
	return err
}

func decodeEnvelope[T any](b []byte, env *envelope[T]) error {
	if err := json.Unmarshal(b, env); err != nil {
		return err
	}
	if env.Code == nil {
		return errors.New(`no "code" field`)
	}
	if *env.Code != 0 {
		return &apicall.Error{
			Reason: apicall.ReasonAPIError, Code: strconv.Itoa(*env.Code), Status: http.StatusOK,
			APICode: *env.Code, Msg: fmt.Sprintf("code %d: %.200s", *env.Code, env.Msg),
		}
	}
	return nil
}

// TagStats returns the records of tagIDs for every day in [from, to],
// fetched in tag batches, date windows of at most three months and pages.
// Records repeated across pages are kept once. The result is sorted by
// date, then tag id.
func (c *Client) TagStats(ctx context.Context, tagIDs []string, from, to calendar.Date) ([]Record, error) {
	if len(tagIDs) == 0 || to.Before(from) {
		return nil, nil
	}
	type key struct {
		tag  string
		date calendar.Date
	}
	seen := map[key]bool{}
	var out []Record
	for batch := range slices.Chunk(tagIDs, c.batchSize) {
		for _, w := range calendar.Windows(from, to, WindowMonths) {
			recs, err := c.window(ctx, batch, w[0], w[1])
			if err != nil {
				return nil, err
			}
			for _, r := range recs {
				k := key{r.TagID, r.Date}
				if !seen[k] {
					seen[k] = true
					out = append(out, r)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Record) int {
		if c := a.Date.Compare(b.Date); c != 0 {
			return c
		}
		return strings.Compare(a.TagID, b.TagID)
	})
	return out, nil
}

type analyzeRequest struct {
	TagIDs       []string `json:"tag_ids"`
	StartDate    string   `json:"start_date"`
	EndDate      string   `json:"end_date"`
	CurrentIndex int      `json:"current_index"`
	PageSize     int      `json:"page_size"`
}

// window pages through one batch and one date window until total records
// have arrived.
func (c *Client) window(ctx context.Context, tags []string, from, to calendar.Date) ([]Record, error) {
	var out []Record
	seen := map[string]bool{}
	var total int64 = -1
	for idx := 1; ; idx++ {
		var pg page
		body, err := json.Marshal(analyzeRequest{TagIDs: tags, StartDate: from.Format(DateLayout), EndDate: to.Format(DateLayout), CurrentIndex: idx, PageSize: c.pageSize})
		if err != nil {
			return nil, err
		}
		err = c.withToken(ctx, func(tok string) error {
			return c.caller.Do(ctx, AnalyzeEndpoint, func(ctx context.Context) (*http.Request, error) {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpointURL(AnalyzePath, url.Values{"access_token": {tok}}), bytes.NewReader(body))
				if err == nil {
					req.Header.Set("Content-Type", "application/json")
				}
				return req, err
			}, func(b []byte) (err error) {
				pg, err = decodePage(b)
				return err
			})
		})
		if err != nil {
			return nil, err
		}
		switch {
		case total < 0:
			total = *pg.Total
		case *pg.Total != total:
			return nil, inconsistent("total changed from %d to %d between pages", total, *pg.Total)
		}
		for _, w := range pg.Records {
			r, err := w.record()
			if err != nil {
				return nil, inconsistent("page %d: %v", idx, err)
			}
			// A repeat means the pages shifted under us: some other record
			// was skipped, so the window cannot be trusted.
			k := r.TagID + " " + w.DS
			if seen[k] {
				return nil, inconsistent("page %d repeats tag %s on %s", idx, r.TagID, w.DS)
			}
			seen[k] = true
			out = append(out, r)
		}
		if int64(len(out)) >= total {
			return out, nil
		}
		if len(pg.Records) == 0 {
			return nil, inconsistent("page %d is empty after %d of %d records", idx, len(out), total)
		}
		if idx > int(total/int64(c.pageSize))+1 {
			return nil, inconsistent("more pages than total %d allows", total)
		}
	}
}

// decodePage reads one answer of the analysis endpoint.
func decodePage(b []byte) (page, error) {
	var env envelope[*page]
	if err := decodeEnvelope(b, &env); err != nil {
		return page{}, err
	}
	if env.Data == nil || env.Data.Total == nil {
		return page{}, errors.New(`answer without "data.total"`)
	}
	if *env.Data.Total < 0 {
		return page{}, fmt.Errorf("negative total %d", *env.Data.Total)
	}
	return *env.Data, nil
}

func inconsistent(format string, args ...any) error {
	return &apicall.Error{Endpoint: AnalyzeEndpoint, Reason: apicall.ReasonInvalidResponse, Code: apicall.CodeInvalidResponse,
		Msg: "inconsistent pagination: " + fmt.Sprintf(format, args...)}
}
