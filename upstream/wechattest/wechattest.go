// Package wechattest is a fake of the WeChat token and datacube retain
// APIs, faithful to their documents: stable tokens that stay the same while
// valid, classic tokens that replace each other (old ones live 5 more
// minutes), natural-week and natural-month date checks, keys that appear
// only once their period has passed, empty lists before publication, and
// faults on demand. Tests use it, and --demo serves it.
package wechattest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wechat"
)

// Fault and Call are the shared fake types.
type (
	Fault = upstreamtest.Fault
	Call  = upstreamtest.Call
)

// classicOverlap is how long a replaced classic token keeps working.
const classicOverlap = 5 * time.Minute

// Server is the fake of one mini-program. Set fields before first use.
type Server struct {
	upstreamtest.Recorder

	AppID    string
	Secret   string
	Location *time.Location
	// PublishDelay is how long after a period ends its data appears.
	PublishDelay time.Duration
	// PublishDelayOn, when set, replaces PublishDelay: the delay after
	// 00:00 of day, the first day after a period, under a day.
	PublishDelayOn func(day calendar.Date) time.Duration
	TokenTTL       time.Duration
	// Value returns users of cohort (kind, start) at key; nil means DemoValue.
	Value func(k wechat.Kind, start calendar.Date, key int, active bool) float64

	mu      sync.Mutex
	stable  token
	classic token
	oldCls  token // the previous classic token, during its overlap
	seq     int
	forces  []time.Time
}

type token struct {
	value   string
	expires time.Time
}

func (t token) valid(s string, now time.Time) bool {
	return t.value != "" && t.value == s && now.Before(t.expires)
}

// New returns a fake in Asia/Shanghai with 7200 s tokens that publishes
// at the end of each period.
func New(appID, secret string) *Server {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return &Server{AppID: appID, Secret: secret, Location: loc, TokenTTL: 7200 * time.Second}
}

// Start serves the fake on a loopback port.
func (s *Server) Start() *httptest.Server { return httptest.NewServer(s) }

// RevokeTokens invalidates every token, as a credential reset does.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stable, s.classic, s.oldCls = token{}, token{}, token{}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call, done := s.Begin(w, r, s.writeError)
	if done {
		return
	}
	switch r.URL.Path {
	case wechat.StableTokenPath:
		s.serveStable(w, r, call)
	case wechat.ClassicTokenPath:
		s.serveClassic(w, r, call)
	case wechat.DailyPath, wechat.WeeklyPath, wechat.MonthlyPath:
		s.serveRetain(w, r, call)
	default:
		s.Record(call, -http.StatusNotFound)
		http.NotFound(w, r)
	}
}

func (s *Server) writeError(w http.ResponseWriter, c Call, code int, msg string) {
	s.write(w, c, code, map[string]any{"errcode": code, "errmsg": msg})
}

func (s *Server) write(w http.ResponseWriter, c Call, code int, body any) {
	s.Record(c, code)
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) newToken(prefix string, now time.Time) token {
	s.seq++
	return token{value: fmt.Sprintf("%s-%d-%08x", prefix, s.seq, hash(s.Secret, s.seq)), expires: now.Add(s.TokenTTL)}
}

func (s *Server) serveStable(w http.ResponseWriter, r *http.Request, c Call) {
	if r.Method != http.MethodPost {
		s.writeError(w, c, 43002, "require POST method")
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := json.Unmarshal([]byte(c.Body), &req); err != nil || req.GrantType != "client_credential" {
		s.writeError(w, c, 40002, "invalid grant_type")
		return
	}
	if req.AppID != s.AppID {
		s.writeError(w, c, 40013, "invalid appid")
		return
	}
	if req.Secret != s.Secret {
		s.writeError(w, c, 40125, "invalid appsecret")
		return
	}
	now := time.Now()
	s.mu.Lock()
	if req.ForceRefresh {
		today := calendar.DateOf(now, s.Location)
		n := 0
		for _, t := range s.forces {
			if calendar.DateOf(t, s.Location) == today {
				n++
			}
		}
		if n >= 20 || (len(s.forces) > 0 && now.Sub(s.forces[len(s.forces)-1]) < 30*time.Second) {
			s.mu.Unlock()
			s.writeError(w, c, 45009, "reach max api daily quota limit")
			return
		}
		s.forces = append(s.forces, now)
		s.stable = s.newToken("stable", now)
	} else if !now.Before(s.stable.expires) {
		s.stable = s.newToken("stable", now)
	}
	t := s.stable
	s.mu.Unlock()
	s.write(w, c, 0, map[string]any{"access_token": t.value, "expires_in": int(t.expires.Sub(now).Seconds())})
}

func (s *Server) serveClassic(w http.ResponseWriter, r *http.Request, c Call) {
	q := r.URL.Query()
	switch {
	case q.Get("grant_type") != "client_credential":
		s.writeError(w, c, 40002, "invalid grant_type")
		return
	case q.Get("appid") != s.AppID:
		s.writeError(w, c, 40013, "invalid appid")
		return
	case q.Get("secret") != s.Secret:
		s.writeError(w, c, 40125, "invalid appsecret")
		return
	}
	now := time.Now()
	s.mu.Lock()
	// Each call replaces the token; the previous one lives 5 more minutes.
	s.oldCls = s.classic
	if end := now.Add(classicOverlap); s.oldCls.value != "" && end.Before(s.oldCls.expires) {
		s.oldCls.expires = end
	}
	s.classic = s.newToken("classic", now)
	t := s.classic
	s.mu.Unlock()
	s.write(w, c, 0, map[string]any{"access_token": t.value, "expires_in": int(s.TokenTTL.Seconds())})
}

func (s *Server) tokenValid(tok string) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stable.valid(tok, now) || s.classic.valid(tok, now) || s.oldCls.valid(tok, now)
}

func (s *Server) serveRetain(w http.ResponseWriter, r *http.Request, c Call) {
	if c.Token == "" {
		s.writeError(w, c, 41001, "access_token missing")
		return
	}
	if !s.tokenValid(c.Token) {
		s.writeError(w, c, 40001, "invalid credential, access_token is invalid or not latest")
		return
	}
	if r.Method != http.MethodPost {
		s.writeError(w, c, 43002, "require POST method")
		return
	}
	var kind wechat.Kind
	switch r.URL.Path {
	case wechat.DailyPath:
		kind = wechat.Daily
	case wechat.WeeklyPath:
		kind = wechat.Weekly
	default:
		kind = wechat.Monthly
	}
	var req struct {
		Begin string `json:"begin_date"`
		End   string `json:"end_date"`
	}
	if err := json.Unmarshal([]byte(c.Body), &req); err != nil {
		s.writeError(w, c, 47001, "data format error")
		return
	}
	begin, err1 := calendar.Parse(wechat.DateLayout, req.Begin)
	end, err2 := calendar.Parse(wechat.DateLayout, req.End)
	if err1 != nil || err2 != nil {
		s.writeError(w, c, 61500, "date format error")
		return
	}
	now := time.Now()
	p := kind.Period()
	if p.Start(begin) != begin || p.End(begin) != end || !p.End(begin).Before(calendar.DateOf(now, s.Location)) {
		s.writeError(w, c, 61501, "date range error")
		return
	}
	var newUsers, active []map[string]any
	for _, key := range kind.Keys() {
		// Key k is known once the k-th period after the cohort has ended.
		after := p.Add(begin, key+1)
		endOfKey := after.Start(s.Location).Add(s.PublishDelay)
		if s.PublishDelayOn != nil {
			endOfKey = after.Start(s.Location).Add(s.PublishDelayOn(after))
		}
		if now.Before(endOfKey) {
			continue
		}
		newUsers = append(newUsers, map[string]any{"key": key, "value": s.value(kind, begin, key, false)})
		active = append(active, map[string]any{"key": key, "value": s.value(kind, begin, key, true)})
	}
	if newUsers == nil {
		newUsers, active = []map[string]any{}, []map[string]any{}
	}
	s.write(w, c, 0, map[string]any{"ref_date": kind.RefDate(begin), "visit_uv_new": newUsers, "visit_uv": active})
}

func (s *Server) value(k wechat.Kind, start calendar.Date, key int, active bool) float64 {
	if s.Value != nil {
		return s.Value(k, start, key, active)
	}
	return DemoValue(s.AppID, k, start, key, active)
}

func hash(s string, n int) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", s, n)
	return h.Sum32()
}

// DemoValue is the synthetic users of a cohort at key: cohort sizes with a
// trend and some noise, retention decaying with the key. The same inputs
// always give the same number.
func DemoValue(appID string, k wechat.Kind, start calendar.Date, key int, active bool) float64 {
	scale := map[wechat.Kind]float64{wechat.Daily: 1, wechat.Weekly: 5, wechat.Monthly: 18}[k]
	day := dayInCycle(start)
	noise := float64(hash(appID+start.String(), int(k))%200) / 1000
	base := (1200 + day*1.5) * scale * (0.9 + noise)
	if active {
		base *= 3.2
	}
	if key == 0 {
		return math.Round(base)
	}
	keep := 0.42
	if active {
		keep = 0.55
	}
	return math.Round(base * keep * math.Pow(0.86, float64(key-1)))
}

// dayInCycle maps a date to 0..3649, a ten-year cycle, so synthetic trends
// stay positive for any date.
func dayInCycle(d calendar.Date) float64 {
	n := d.DaysSince(calendar.Date{Year: 2000, Month: 1, Day: 1}) % 3650
	if n < 0 {
		n += 3650
	}
	return float64(n)
}
