// Package wechat is a client of the WeChat mini-program datacube retention
// APIs (daily, weekly, monthly retain) and of the access tokens they need.
// It returns plain values and knows nothing of Prometheus.
package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/apicall"
)

// API paths.
const (
	StableTokenPath  = "/cgi-bin/stable_token"
	ClassicTokenPath = "/cgi-bin/token"
	DailyPath        = "/datacube/getweanalysisappiddailyretaininfo"
	WeeklyPath       = "/datacube/getweanalysisappidweeklyretaininfo"
	MonthlyPath      = "/datacube/getweanalysisappidmonthlyretaininfo"

	// DateLayout is the APIs' yyyymmdd.
	DateLayout = "20060102"

	// PublishNotBefore is how long after a period ends its data can first
	// appear: the official guidance is to ask after 08:00 China time.
	PublishNotBefore = 8 * time.Hour
)

// Kind is one of the three retain APIs.
type Kind int

// The retain kinds.
const (
	Daily Kind = iota
	Weekly
	Monthly
)

// Kinds lists every kind.
var Kinds = []Kind{Daily, Weekly, Monthly}

var kindInfo = [...]struct {
	name, path string
	period     calendar.Period
	keys       []int
}{
	Daily:   {"daily", DailyPath, calendar.Day, []int{0, 1, 2, 3, 4, 5, 6, 7, 14, 30}},
	Weekly:  {"weekly", WeeklyPath, calendar.Week, []int{0, 1, 2, 3, 4}},
	Monthly: {"monthly", MonthlyPath, calendar.Month, []int{0, 1}},
}

// ParseKind reads "daily", "weekly" or "monthly".
func ParseKind(s string) (Kind, bool) {
	for _, k := range Kinds {
		if kindInfo[k].name == s {
			return k, true
		}
	}
	return 0, false
}

func (k Kind) String() string { return kindInfo[k].name }

// Path is the API path of the kind.
func (k Kind) Path() string { return kindInfo[k].path }

// Endpoint is the endpoint label of the kind's calls.
func (k Kind) Endpoint() string { return k.Path()[strings.LastIndexByte(k.Path(), '/')+1:] }

// Period is the natural period a cohort of this kind spans.
func (k Kind) Period() calendar.Period { return kindInfo[k].period }

// Keys are the keys the API publishes for this kind: periods after the
// cohort's own (key 0).
func (k Kind) Keys() []int { return kindInfo[k].keys }

// RefDate is the ref_date the API answers for the cohort starting at d.
func (k Kind) RefDate(d calendar.Date) string {
	switch k {
	case Weekly:
		return d.Format(DateLayout) + "-" + k.Period().End(d).Format(DateLayout)
	case Monthly:
		return d.Format("200601")
	}
	return d.Format(DateLayout)
}

// Retain is one cohort's answer: key → users, for new and active users.
// Keys the API has not published yet are absent.
type Retain struct {
	RefDate string
	New     map[int]float64 // visit_uv_new
	Active  map[int]float64 // visit_uv
}

// Empty reports whether nothing is published for the cohort yet.
func (r Retain) Empty() bool { return len(r.New) == 0 && len(r.Active) == 0 }

// Has reports whether key is published.
func (r Retain) Has(key int) bool {
	_, a := r.New[key]
	_, b := r.Active[key]
	return a || b
}

// TokenMode says where access tokens come from.
type TokenMode string

// Token modes of the `token` config key.
const (
	TokenStable  TokenMode = "stable"  // POST /cgi-bin/stable_token; never invalidates others' tokens
	TokenClassic TokenMode = "classic" // GET /cgi-bin/token; each fetch invalidates the previous token
	TokenFile    TokenMode = "file"    // read from a file kept fresh by another service
)

// Options configure a Client.
type Options struct {
	BaseURL   string
	AppID     string
	Secret    string
	Mode      TokenMode
	TokenFile string
	HTTP      *http.Client
	RateLimit float64
	Observer  apicall.Observer
	MaxBody   int64
	// Location is the API's calendar (China time); quotas reset at its midnight.
	Location *time.Location
}

// Force-refresh limits of stable tokens: 20 a day, 30 s apart.
const (
	forceRefreshPerDay = 20
	forceRefreshGap    = 30 * time.Second
)

// Client calls the datacube for one mini-program; safe for concurrent use.
type Client struct {
	opts   Options
	base   *url.URL
	caller *apicall.Caller
	tokens apicall.TokenCache

	mu        sync.Mutex
	fileToken string      // last read from access_token_file, for redaction
	forces    []time.Time // force refreshes today
}

// New validates opts and returns a client.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("wechat: base URL %q is not an http(s) URL", opts.BaseURL)
	}
	switch opts.Mode {
	case "":
		opts.Mode = TokenStable
		fallthrough
	case TokenStable, TokenClassic:
		if opts.AppID == "" || opts.Secret == "" {
			return nil, errors.New("wechat: appid and secret are required")
		}
	case TokenFile:
		if opts.TokenFile == "" {
			return nil, errors.New("wechat: token mode file needs an access token file")
		}
	default:
		return nil, fmt.Errorf("wechat: unknown token mode %q", opts.Mode)
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = 10
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	c := &Client{opts: opts, base: u}
	c.tokens.Fetch = func(ctx context.Context) (apicall.Token, error) { return c.fetchToken(ctx, false) }
	c.tokens.Observer = opts.Observer
	c.caller = &apicall.Caller{HTTP: opts.HTTP, Limiter: apicall.NewLimiter(opts.RateLimit),
		Observer: opts.Observer, MaxBody: opts.MaxBody, Secrets: c.secrets,
		Retries: apicall.DefaultRetries, RetryWait: apicall.DefaultRetryWait}
	return c, nil
}

func (c *Client) secrets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []string{c.opts.Secret, c.tokens.Current(), c.fileToken}
}

func (c *Client) endpointURL(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// errorBody is the shape of every error answer.
type errorBody struct {
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// Error codes with a meaning of their own (UPSTREAM_NOTES.md).
const (
	codeBusy         = -1
	codeInvalidAppID = 40013
	codeIPWhitelist  = 40164
	codeDailyQuota   = 45009
	codeMinuteQuota  = 45011
	codeUnauthorized = 48001
	codeDateFormat   = 61500
	codeDateRange    = 61501
)

var tokenCodes = []int{40001, 40014, 42001}

// IsTokenError reports whether err says the access token was rejected.
func IsTokenError(err error) bool {
	e, ok := apicall.AsError(err)
	return ok && slices.Contains(tokenCodes, e.APICode)
}

// apiError classifies an errcode as UPSTREAM_NOTES.md's table says.
func (c *Client) apiError(code int, msg string) *apicall.Error {
	now := time.Now()
	e := &apicall.Error{Reason: apicall.ReasonAPIError, Code: strconv.Itoa(code), Status: http.StatusOK, APICode: code,
		Msg: fmt.Sprintf("errcode %d: %.200s", code, msg)}
	switch code {
	case codeBusy:
		e.Msg += " (system busy; retrying with backoff)"
	case codeDailyQuota:
		e.Reason, e.RetryAfter = apicall.ReasonQuota, calendar.NextMidnight(now, c.opts.Location)
		e.Msg += " (daily quota reached: no calls to this API until tomorrow)"
	case codeMinuteQuota:
		e.Reason, e.RetryAfter = apicall.ReasonQuota, now.Add(time.Minute)
		e.Msg += " (per-minute quota reached: waiting a minute)"
	case codeInvalidAppID, codeIPWhitelist, codeUnauthorized:
		e.Reason, e.RetryAfter = apicall.ReasonConfig, now.Add(time.Hour)
		e.Msg += " (configuration problem: check appid, the IP whitelist and the API's authorization; retrying hourly)"
	case codeDateFormat, codeDateRange:
		e.Msg += " (the exporter sent a date window the API rejects: this is a bug, please report it)"
	}
	return e
}

// checkError returns the API error a body carries, if any.
func (c *Client) checkError(b []byte) error {
	var eb errorBody
	if err := json.Unmarshal(b, &eb); err != nil {
		return err
	}
	if eb.ErrCode != nil && *eb.ErrCode != 0 {
		return c.apiError(*eb.ErrCode, eb.ErrMsg)
	}
	return nil
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// accessToken returns a usable token: from the file in file mode, else the
// cached one or a fresh fetch.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	if c.opts.Mode == TokenFile {
		return c.readTokenFile()
	}
	return c.tokens.Get(ctx)
}

func (c *Client) readTokenFile() (string, error) {
	b, err := os.ReadFile(c.opts.TokenFile)
	tok := strings.TrimSpace(string(b))
	if err == nil && tok == "" {
		err = errors.New("file is empty")
	}
	if err != nil {
		return "", &apicall.Error{Endpoint: "access_token_file", Reason: apicall.ReasonToken, Code: apicall.CodeNetwork,
			Msg: fmt.Sprintf("reading access_token_file: %v", errors.Unwrap(err))}
	}
	c.mu.Lock()
	c.fileToken = tok
	c.mu.Unlock()
	return tok, nil
}

// Endpoint labels of the token calls.
const (
	stableTokenEndpoint  = "stable_token"
	classicTokenEndpoint = "token"
)

// Endpoints lists the endpoint labels a client in mode calls for kinds, so
// their counters can start at zero.
func Endpoints(mode TokenMode, kinds []Kind) []string {
	var eps []string
	switch mode {
	case TokenStable, "":
		eps = append(eps, stableTokenEndpoint)
	case TokenClassic:
		eps = append(eps, classicTokenEndpoint)
	}
	for _, k := range kinds {
		eps = append(eps, k.Endpoint())
	}
	return eps
}

// fetchToken asks the token endpoint of the configured mode for a token;
// force asks the stable endpoint to issue a new one.
func (c *Client) fetchToken(ctx context.Context, force bool) (apicall.Token, error) {
	var ans tokenAnswer
	endpoint := stableTokenEndpoint
	newReq := func(ctx context.Context) (*http.Request, error) {
		body, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": c.opts.AppID, "secret": c.opts.Secret, "force_refresh": force})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpointURL(StableTokenPath, nil), bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	}
	if c.opts.Mode == TokenClassic {
		endpoint = classicTokenEndpoint
		newReq = func(ctx context.Context) (*http.Request, error) {
			q := url.Values{"grant_type": {"client_credential"}, "appid": {c.opts.AppID}, "secret": {c.opts.Secret}}
			return http.NewRequestWithContext(ctx, http.MethodGet, c.endpointURL(ClassicTokenPath, q), nil)
		}
	}
	err := c.caller.Do(ctx, endpoint, newReq, func(b []byte) error {
		if err := c.checkError(b); err != nil {
			return err
		}
		if err := json.Unmarshal(b, &ans); err != nil {
			return err
		}
		if ans.AccessToken == "" || ans.ExpiresIn <= 0 {
			return errors.New("token answer without access_token or expires_in")
		}
		return nil
	})
	if err != nil {
		if e, ok := apicall.AsError(err); ok && e.APICode != 0 && e.Reason == apicall.ReasonAPIError {
			e.Reason = apicall.ReasonToken
		}
		return apicall.Token{}, err
	}
	return apicall.Token{Value: ans.AccessToken, TTL: time.Duration(ans.ExpiresIn) * time.Second}, nil
}

// forceAllowed spends one of the stable endpoint's force refreshes if the
// budget has one: at most 20 a day (China time) and 30 s apart.
func (c *Client) forceAllowed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	today := calendar.DateOf(now, c.opts.Location)
	kept := c.forces[:0]
	for _, t := range c.forces {
		if calendar.DateOf(t, c.opts.Location) == today {
			kept = append(kept, t)
		}
	}
	c.forces = kept
	if len(c.forces) >= forceRefreshPerDay || (len(c.forces) > 0 && now.Sub(c.forces[len(c.forces)-1]) < forceRefreshGap) {
		return false
	}
	c.forces = append(c.forces, now)
	return true
}

// withToken runs call with a token. A rejected token is fetched again once
// and the call retried; with stable tokens, a freshly fetched token that
// is rejected too is force-refreshed (within its budget) and tried last.
func (c *Client) withToken(ctx context.Context, call func(token string) error) error {
	tok, err := c.accessToken(ctx)
	if err != nil {
		return err
	}
	if err = call(tok); !IsTokenError(err) {
		return err
	}
	if c.opts.Mode == TokenFile {
		// The owner of the file may have rotated it since we read it.
		fresh, ferr := c.readTokenFile()
		if ferr != nil || fresh == tok {
			return apicall.TokenRejected(err, "the token in access_token_file was rejected")
		}
		return call(fresh)
	}
	if tok, err = c.tokens.Renew(ctx, tok); err != nil {
		return err
	}
	if err = call(tok); !IsTokenError(err) {
		return err
	}
	if c.opts.Mode != TokenStable {
		return apicall.TokenRejected(err, "a freshly fetched token was rejected too")
	}
	if !c.forceAllowed() {
		return apicall.TokenRejected(err, "stable token rejected twice; force refresh budget (20 a day, 30 s apart) spent")
	}
	force := func(ctx context.Context) (apicall.Token, error) { return c.fetchToken(ctx, true) }
	if tok, err = c.tokens.RenewWith(ctx, tok, force); err != nil {
		return err
	}
	if err = call(tok); IsTokenError(err) {
		return apicall.TokenRejected(err, "rejected even after a forced refresh")
	}
	return err
}

type retainAnswer struct {
	RefDate    string     `json:"ref_date"`
	VisitUVNew []keyValue `json:"visit_uv_new"`
	VisitUV    []keyValue `json:"visit_uv"`
}

// keyValue is one retain item; values arrive as numbers, or as strings
// from some gateways, and mean the same.
type keyValue struct {
	Key   *int           `json:"key"`
	Value apicall.Number `json:"value"`
}

func toMap(name string, kvs []keyValue) (map[int]float64, error) {
	m := make(map[int]float64, len(kvs))
	for _, kv := range kvs {
		if kv.Key == nil || !kv.Value.Valid {
			return nil, fmt.Errorf("%s item without key or value", name)
		}
		if *kv.Key < 0 || kv.Value.Value < 0 {
			return nil, fmt.Errorf("%s item %d: negative key or value", name, *kv.Key)
		}
		if _, dup := m[*kv.Key]; dup {
			return nil, fmt.Errorf("%s repeats key %d", name, *kv.Key)
		}
		m[*kv.Key] = kv.Value.Value
	}
	return m, nil
}

// decodeRetain reads a retain answer (error answers are checked before) for
// the cohort whose ref_date is want. Both lists empty or null means "not
// published yet"; one of them empty while the other is not is a broken
// answer, as is an answer for another period.
func decodeRetain(b []byte, want string) (Retain, error) {
	var ans retainAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return Retain{}, err
	}
	newUsers, err := toMap("visit_uv_new", ans.VisitUVNew)
	if err != nil {
		return Retain{}, err
	}
	active, err := toMap("visit_uv", ans.VisitUV)
	if err != nil {
		return Retain{}, err
	}
	if len(newUsers) == 0 && len(active) == 0 {
		return Retain{RefDate: ans.RefDate}, nil
	}
	if ans.RefDate != want {
		return Retain{}, fmt.Errorf("answer for ref_date %.40q, asked for %q", ans.RefDate, want)
	}
	if len(newUsers) == 0 || len(active) == 0 {
		return Retain{}, errors.New("one of visit_uv_new and visit_uv is empty, the other is not")
	}
	return Retain{RefDate: ans.RefDate, New: newUsers, Active: active}, nil
}

// Retain fetches the cohort of kind k that starts at start (a day, a
// Monday, or a 1st). An empty answer means not published yet.
func (c *Client) Retain(ctx context.Context, k Kind, start calendar.Date) (Retain, error) {
	p := k.Period()
	if p.Start(start) != start {
		return Retain{}, fmt.Errorf("wechat: %s cohort cannot start on %s", k, start)
	}
	body, _ := json.Marshal(map[string]string{"begin_date": start.Format(DateLayout), "end_date": p.End(start).Format(DateLayout)})
	want := k.RefDate(start)
	var out Retain
	err := c.withToken(ctx, func(tok string) error {
		return c.caller.Do(ctx, k.Endpoint(), func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpointURL(k.Path(), url.Values{"access_token": {tok}}), bytes.NewReader(body))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
			return req, err
		}, func(b []byte) error {
			if err := c.checkError(b); err != nil {
				return err
			}
			var err error
			out, err = decodeRetain(b, want)
			return err
		})
	})
	return out, err
}
