package apicall

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
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
