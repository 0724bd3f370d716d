package apicall

import (
	"context"
	"sync"
	"time"
)

// Token is an access token as an upstream hands it out.
type Token struct {
	Value string
	TTL   time.Duration
	// Created is when the upstream made the token, if it says so; a token
	// handed out again within its validity keeps its first creation time.
	Created time.Time
}

// TokenCache holds one access token for a client: cached until shortly
// before it expires, fetched by one caller at a time (the others wait and
// reuse the result), and replaced when the upstream rejects it.
type TokenCache struct {
	// Fetch asks the upstream for a token.
	Fetch func(ctx context.Context) (Token, error)
	// Observer, if set, counts every fetch.
	Observer Observer

	once  sync.Once
	slot  chan struct{} // one fetch in flight
	mu    sync.Mutex
	token string
	until time.Time
}

// Get returns the cached token, or fetches one.
func (c *TokenCache) Get(ctx context.Context) (string, error) {
	if tok, ok := c.valid(); ok {
		return tok, nil
	}
	return c.Renew(ctx, "")
}

// Current returns the cached token, valid or not, for redaction.
func (c *TokenCache) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

func (c *TokenCache) valid() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token, c.token != "" && time.Now().Before(c.until)
}

// Renew fetches a new token because stale was rejected (or, with stale
// empty, because none is cached) — unless another caller has replaced
// stale while this one waited for its turn.
func (c *TokenCache) Renew(ctx context.Context, stale string) (string, error) {
	return c.RenewWith(ctx, stale, c.Fetch)
}

// RenewWith is Renew with another fetch, such as one that forces the
// upstream to issue a new token.
func (c *TokenCache) RenewWith(ctx context.Context, stale string, fetch func(context.Context) (Token, error)) (string, error) {
	c.once.Do(func() { c.slot = make(chan struct{}, 1) })
	select {
	case c.slot <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-c.slot }()
	if tok, ok := c.valid(); ok && tok != stale {
		return tok, nil
	}
	now := time.Now()
	t, err := fetch(ctx)
	if ctx.Err() != nil {
		return "", ctx.Err() // shutdown: neither a success nor a failure
	}
	if c.Observer != nil {
		c.Observer.ObserveTokenRefresh(err == nil)
	}
	if err != nil {
		return "", err
	}
	expiry := now.Add(t.TTL)
	if !t.Created.IsZero() && t.Created.Before(now) && t.Created.Add(t.TTL).After(now) {
		expiry = t.Created.Add(t.TTL)
	}
	until := expiry.Add(-min(5*time.Minute, t.TTL/10))
	if !until.After(now) {
		// Handed a token near its end: use it to the end rather than
		// asking again on every call.
		until = expiry
	}
	c.mu.Lock()
	c.token, c.until = t.Value, until
	c.mu.Unlock()
	return t.Value, nil
}
