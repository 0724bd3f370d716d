// Package upstreamtest has helpers for tests of the upstream clients: an
// in-memory transport to a fake's handler (so tests can run inside a
// testing/synctest bubble, where real sockets would never let the fake
// clock advance) and an Observer that records what it is told.
package upstreamtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"time"
)

// Client returns an *http.Client whose requests are served by h in memory.
func Client(h http.Handler) *http.Client {
	return &http.Client{Transport: transport{h}, Timeout: 30 * time.Second}
}

type transport struct{ h http.Handler }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	// A server always sees a body, and owns its own copy of the request.
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, sreq)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// Observer records observations; safe for concurrent use.
type Observer struct {
	mu       sync.Mutex
	Requests map[string]int // "endpoint code" → count
	Tokens   map[bool]int
}

func (o *Observer) ObserveRequest(endpoint, code string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.Requests == nil {
		o.Requests = map[string]int{}
	}
	o.Requests[endpoint+" "+code]++
}

func (o *Observer) ObserveTokenRefresh(ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.Tokens == nil {
		o.Tokens = map[bool]int{}
	}
	o.Tokens[ok]++
}

// String lists the request counts sorted, for comparisons in tests.
func (o *Observer) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]string, 0, len(o.Requests))
	for k := range o.Requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s=%d;", k, o.Requests[k])
	}
	return s
}
