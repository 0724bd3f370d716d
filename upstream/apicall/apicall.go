// Package apicall is the HTTP plumbing both upstream clients share: a rate
// limiter, bounded response bodies, typed errors that classify a failure
// for the metrics, one observation per call, and redaction of the secrets
// these APIs carry in URL queries.
package apicall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxBody bounds one response body; a page of 100 records is ~50 KiB.
const DefaultMaxBody = 8 << 20

// Reasons a refresh fails, the values of the refresh_errors_total reason
// label. Each is known in advance so the counters can start at zero.
const (
	ReasonNetwork         = "network"          // connection refused, reset, DNS
	ReasonTimeout         = "timeout"          // no answer within the timeout
	ReasonHTTP            = "http_status"      // non-2xx status
	ReasonInvalidResponse = "invalid_response" // not the JSON the API documents, or too large
	ReasonToken           = "token"            // an access token could not be obtained
	ReasonAPIError        = "api_error"        // the API's own non-zero error code
	ReasonQuota           = "quota"            // the API's quota is used up
	ReasonConfig          = "config"           // the API says the configuration is wrong
)

// Reasons lists every reason label value.
var Reasons = []string{ReasonNetwork, ReasonTimeout, ReasonHTTP, ReasonInvalidResponse, ReasonToken, ReasonAPIError, ReasonQuota, ReasonConfig}

// Code labels of upstream_requests_total besides the API's own codes.
const (
	CodeOK              = "0"
	CodeNetwork         = "network"
	CodeInvalidResponse = "invalid_response"
)

// Observer receives one report per upstream HTTP call and token fetch.
type Observer interface {
	ObserveRequest(endpoint, code string, d time.Duration)
	ObserveTokenRefresh(success bool)
}

// Error is a failed upstream call. Its text never holds a secret.
type Error struct {
	Endpoint string
	Reason   string // one of Reasons
	Code     string // the code label: API code, http_NNN, network, invalid_response
	Status   int    // HTTP status, when one was received
	APICode  int    // the API's error code, when it sent one
	Msg      string // what went wrong, redacted
	// RetryAfter, when not zero, is the earliest moment the API may be
	// called again (quota errors).
	RetryAfter time.Time
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Endpoint, e.Msg)
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ReasonOf classifies err for the refresh_errors_total reason label.
func ReasonOf(err error) string {
	if e, ok := AsError(err); ok {
		return e.Reason
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	return ReasonInvalidResponse
}

// Caller sends requests for one target.
type Caller struct {
	HTTP     *http.Client
	Limiter  *rate.Limiter
	Observer Observer
	MaxBody  int64
	// Secrets returns the values to scrub from any error text (secret,
	// current token); URLs are redacted by query key as well.
	Secrets func() []string
	// Retries is how often a call that failed in passing (502, 503 or 504
	// without Retry-After; a refused or reset connection) is sent again,
	// after RetryWait, then twice that, and so on. A refresh of many pages
	// then survives a flaky gateway without starting over.
	Retries   int
	RetryWait time.Duration
}

// DefaultRetries and DefaultRetryWait are what the clients use.
const (
	DefaultRetries   = 2
	DefaultRetryWait = time.Second
)

// TokenRejected turns err, an answer rejecting an access token that was
// already renewed, into a token failure (reason token) that says why.
func TokenRejected(err error, why string) error {
	if e, ok := AsError(err); ok {
		e.Reason = ReasonToken
		e.Msg += " (" + why + ")"
		return e
	}
	return err
}

// transient reports whether e is worth an immediate second try.
func transient(e *Error) bool {
	switch e.Reason {
	case ReasonNetwork:
		return true
	case ReasonHTTP:
		return e.RetryAfter.IsZero() && (e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout)
	}
	return false
}

// NewLimiter returns a limiter of perSecond calls with a burst of at least one.
func NewLimiter(perSecond float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond)))
}

// Do sends the request built by newReq and hands the body of a 2xx answer
// to decode. decode returns an *Error for an API-level failure (its Code
// labels the observation), or any other error for an undecodable body.
func (c *Caller) Do(ctx context.Context, endpoint string, newReq func(context.Context) (*http.Request, error), decode func([]byte) error) error {
	wait := c.RetryWait
	for attempt := 0; ; attempt++ {
		err := c.once(ctx, endpoint, newReq, decode)
		e, ok := AsError(err)
		if !ok || attempt >= c.Retries || !transient(e) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait *= 2
	}
}

func (c *Caller) once(ctx context.Context, endpoint string, newReq func(context.Context) (*http.Request, error), decode func([]byte) error) error {
	if c.Limiter != nil {
		if err := c.Limiter.Wait(ctx); err != nil {
			return err
		}
	}
	req, err := newReq(ctx)
	if err != nil {
		return &Error{Endpoint: endpoint, Reason: ReasonInvalidResponse, Code: CodeInvalidResponse, Msg: c.scrub(err.Error())}
	}
	start := time.Now()
	body, status, header, err := c.roundTrip(req)
	took := time.Since(start)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return ctx.Err() // shutdown, not an upstream failure
		}
		reason := ReasonNetwork
		if isTimeout(err) {
			reason = ReasonTimeout
		}
		e := &Error{Endpoint: endpoint, Reason: reason, Code: CodeNetwork, Status: status, Msg: c.scrub(err.Error())}
		if errors.Is(err, errTooLarge) {
			e.Reason, e.Code = ReasonInvalidResponse, CodeInvalidResponse
		}
		c.observe(endpoint, e.Code, took)
		return e
	}
	if status < 200 || status > 299 {
		code := "http_" + strconv.Itoa(status)
		c.observe(endpoint, code, took)
		return &Error{Endpoint: endpoint, Reason: ReasonHTTP, Code: code, Status: status, Msg: fmt.Sprintf("HTTP status %d", status),
			RetryAfter: retryAfter(header.Get("Retry-After"), time.Now())}
	}
	if err := decode(body); err != nil {
		if e, ok := AsError(err); ok {
			e.Endpoint, e.Msg = endpoint, c.scrub(e.Msg)
			c.observe(endpoint, e.Code, took)
			return e
		}
		c.observe(endpoint, CodeInvalidResponse, took)
		return &Error{Endpoint: endpoint, Reason: ReasonInvalidResponse, Code: CodeInvalidResponse, Status: status,
			Msg: c.scrub(fmt.Sprintf("invalid response (%s, %d bytes): %v", describeBody(body), len(body), err))}
	}
	c.observe(endpoint, CodeOK, took)
	return nil
}

var errTooLarge = errors.New("response body too large")

func (c *Caller) roundTrip(req *http.Request) ([]byte, int, http.Header, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, nil, redactURLError(err)
	}
	defer resp.Body.Close()
	limit := c.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, resp.StatusCode, resp.Header, fmt.Errorf("reading body: %w", redactURLError(err))
	}
	if int64(len(body)) > limit {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused when cheap
		return nil, resp.StatusCode, resp.Header, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return body, resp.StatusCode, resp.Header, nil
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped
// at a day so that a bad header cannot silence a target for long.
func retryAfter(v string, now time.Time) time.Time {
	if v == "" {
		return time.Time{}
	}
	var at time.Time
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		at = now.Add(time.Duration(secs) * time.Second)
	} else if t, err := http.ParseTime(v); err == nil {
		at = t
	} else {
		return time.Time{}
	}
	if limit := now.Add(24 * time.Hour); at.After(limit) {
		return limit
	}
	return at
}

func (c *Caller) observe(endpoint, code string, d time.Duration) {
	if c.Observer != nil {
		c.Observer.ObserveRequest(endpoint, code, d)
	}
}

func (c *Caller) scrub(s string) string {
	if c.Secrets == nil {
		return s
	}
	return Scrub(s, c.Secrets()...)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}

// describeBody names what an undecodable body looks like without quoting
// it: an HTML error page and truncated JSON call for different fixes.
func describeBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "empty body"
	case strings.HasPrefix(s, "<"):
		return "HTML or XML, not JSON"
	case strings.HasPrefix(s, "{"):
		return "JSON object"
	}
	return "not JSON"
}

// secretKeys are query keys whose values never leave this package unredacted.
var secretKeys = []string{"access_token", "app_secret", "secret", "appsecret", "component_access_token", "authorizer_access_token"}

// RedactURL returns u as a string with every secret query value replaced.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	cp := *u
	q := cp.Query()
	for _, k := range secretKeys {
		if q.Has(k) {
			q.Set(k, "REDACTED")
		}
	}
	cp.RawQuery = q.Encode()
	cp.User = nil
	return cp.String()
}

// redactURLError rewrites the URL that net/http puts into its errors.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	red := "(unparsable URL)"
	if u, perr := url.Parse(ue.URL); perr == nil {
		red = RedactURL(u)
	}
	// The inner error names host and port at most; it stays as it is so
	// timeouts remain recognisable.
	return &url.Error{Op: ue.Op, URL: red, Err: ue.Err}
}

// Scrub replaces each non-empty secret in s.
func Scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	return s
}
