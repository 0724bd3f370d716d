package apicall

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A 429 or 503 with Retry-After tells the scheduler when to come back;
// absurd or unreadable values do not silence the target for long.
func TestRetryAfterHeader(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		header string
		want   time.Duration // from now; 0: none
	}{
		{"120", 120 * time.Second},
		{now.Add(time.Hour).UTC().Format(http.TimeFormat), time.Hour},
		{"999999999", 24 * time.Hour},
		{"soon", 0},
		{"", 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			w.WriteHeader(http.StatusTooManyRequests)
		}))
		c := &Caller{HTTP: srv.Client()}
		err := c.Do(context.Background(), "ep", func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		}, func([]byte) error { return nil })
		srv.Close()
		e, ok := AsError(err)
		if !ok || e.Code != "http_429" || e.Reason != ReasonHTTP {
			t.Fatalf("Retry-After %q: error %v", tc.header, err)
		}
		switch {
		case tc.want == 0 && !e.RetryAfter.IsZero():
			t.Errorf("Retry-After %q: RetryAfter %v, want none", tc.header, e.RetryAfter)
		case tc.want != 0:
			if d := e.RetryAfter.Sub(now) - tc.want; d < -2*time.Second || d > 2*time.Second {
				t.Errorf("Retry-After %q: RetryAfter in %v, want %v", tc.header, e.RetryAfter.Sub(now), tc.want)
			}
		}
	}
}

// A 502, 503 or 504 is sent again twice, a second then two later; a 500
// or a 503 with Retry-After is not.
func TestTransientFailuresAreRetriedTwice(t *testing.T) {
	for _, tc := range []struct {
		status     int
		retryAfter string
		want       string
	}{
		{502, "", "0s 1s 2s"},
		{503, "", "0s 1s 2s"},
		{504, "", "0s 1s 2s"},
		{500, "", "0s"},
		{503, "120", "0s"},
	} {
		synctest.Test(t, func(t *testing.T) {
			began := time.Now()
			var at []string
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				at = append(at, time.Since(began).String())
				began = time.Now()
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
			})
			c := &Caller{HTTP: &http.Client{Transport: handlerTransport{h}}, Retries: DefaultRetries, RetryWait: DefaultRetryWait}
			err := c.Do(context.Background(), "e", func(ctx context.Context) (*http.Request, error) {
				return http.NewRequestWithContext(ctx, http.MethodGet, "http://x.test/", nil)
			}, func([]byte) error { return nil })
			if e, ok := AsError(err); !ok || e.Status != tc.status {
				t.Fatalf("%d: err %v", tc.status, err)
			}
			if got := strings.Join(at, " "); got != tc.want {
				t.Errorf("%d (Retry-After %q): calls at %q, want %q", tc.status, tc.retryAfter, got, tc.want)
			}
		})
	}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}
