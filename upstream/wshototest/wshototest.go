// Package wshototest is a fake of the wshoto open API, faithful to its
// document and to what is known of it beyond: an access token that is
// reused while valid and can be revoked, request validation, T+1
// publication, pagination by total, and faults on demand. Tests use it, and
// --demo serves it on a loopback port.
package wshototest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/wechat-retention/wechat_retention_exporter/calendar"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/upstreamtest"
	"github.com/wechat-retention/wechat_retention_exporter/upstream/wshoto"
)

// Tag is a group tag the fake knows.
type Tag struct {
	ID   string
	Name string
}

// DemoTags are realistic tags with Chinese names.
var DemoTags = []Tag{
	{"etMNcGDQAAbj0PNq", "高意向客户"},
	{"etMNcGDQAAc2wxVt", "老客户复购"},
	{"etMNcGDQAAdL8s1y", "新人福利群"},
	{"etMNcGDQAAe9kQpz", "门店·上海徐汇"},
	{"etMNcGDQAAfH3mRa", "直播引流"},
}

// Fault and Call are the shared fake types.
type (
	Fault = upstreamtest.Fault
	Call  = upstreamtest.Call
)

// Server is the fake. Set fields before first use; methods are safe for
// concurrent use.
type Server struct {
	AppID     string
	AppSecret string
	Tags      []Tag
	Location  *time.Location
	// PublishDelay is how long after midnight a day's data appears (T+1).
	PublishDelay time.Duration
	// PublishDelayOn, when set, replaces PublishDelay: the delay on each
	// day (of publication) after its midnight, under a day.
	PublishDelayOn func(day calendar.Date) time.Duration
	TokenTTL       time.Duration
	// Data returns the record of tag on day d; nil means DemoRecord.
	Data func(tag Tag, d calendar.Date) map[string]any

	upstreamtest.Recorder

	mu       sync.Mutex
	tokens   map[string]time.Time // token → created
	current  string
	seq      int
	unpubEnd calendar.Date // days after this are withheld, when set
}

// New returns a fake with the demo tags, Asia/Shanghai and a 7200 s token.
func New(appID, secret string) *Server {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return &Server{AppID: appID, AppSecret: secret, Tags: DemoTags, Location: loc, TokenTTL: 7200 * time.Second}
}

// Start serves the fake on a loopback port.
func (s *Server) Start() *httptest.Server { return httptest.NewServer(s) }

// RevokeTokens invalidates every token handed out, as the vendor may do.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens, s.current = nil, ""
}

// RotateSecret replaces the app secret, as a reset in the console does:
// every token handed out stops working.
func (s *Server) RotateSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.AppSecret = secret
	s.tokens, s.current = nil, ""
}

// Withhold makes every day after last unpublished, whatever the clock says;
// the zero Date lifts it.
func (s *Server) Withhold(last calendar.Date) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpubEnd = last
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call, done := s.Begin(w, r, func(w http.ResponseWriter, c Call, code int, msg string) { s.answer(w, c, code, msg, nil) })
	if done {
		return
	}
	method, known := map[string]string{wshoto.TokenPath: http.MethodGet, wshoto.AnalyzePath: http.MethodPost}[r.URL.Path]
	switch {
	case !known:
		s.Record(call, -http.StatusNotFound)
		http.NotFound(w, r)
	case r.Method != method:
		s.Record(call, -http.StatusMethodNotAllowed)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case r.URL.Path == wshoto.TokenPath:
		s.serveToken(w, r, call)
	default:
		s.serveAnalyze(w, call, []byte(call.Body))
	}
}

func (s *Server) answer(w http.ResponseWriter, c Call, code int, msg string, data any) {
	s.Record(c, code)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	out := map[string]any{"code": code, "msg": msg}
	if data != nil {
		out["data"] = data
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, c Call) {
	q := r.URL.Query()
	s.mu.Lock()
	secret := s.AppSecret
	s.mu.Unlock()
	if q.Get("appid") != s.AppID || q.Get("app_secret") != secret {
		s.answer(w, c, 40013, "appid或app_secret错误", nil)
		return
	}
	now := time.Now()
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = map[string]time.Time{}
	}
	created, ok := s.tokens[s.current]
	if !ok || now.Sub(created) >= s.TokenTTL {
		s.seq++
		s.current = fmt.Sprintf("wst-%d-%x", s.seq, fnv32(secret+strconv.Itoa(s.seq)))
		created = now
		s.tokens[s.current] = created
	}
	tok := s.current
	s.mu.Unlock()
	s.answer(w, c, 0, "ok", map[string]any{"access_token": tok, "expires_in": int(s.TokenTTL.Seconds()), "create_at": created.Unix()})
}

func (s *Server) tokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	created, ok := s.tokens[tok]
	return ok && time.Since(created) < s.TokenTTL
}

type analyzeBody struct {
	TagIDs       []string `json:"tag_ids"`
	StartDate    string   `json:"start_date"`
	EndDate      string   `json:"end_date"`
	CurrentIndex *int     `json:"current_index"`
	PageSize     *int     `json:"page_size"`
}

func (s *Server) serveAnalyze(w http.ResponseWriter, c Call, body []byte) {
	if !s.tokenValid(c.Token) {
		s.answer(w, c, 40014, "access_token无效或已过期", nil)
		return
	}
	var req analyzeBody
	if err := json.Unmarshal(body, &req); err != nil {
		s.answer(w, c, 400, "请求参数格式错误", nil)
		return
	}
	idx, size := 1, 20
	if req.CurrentIndex != nil {
		idx = *req.CurrentIndex
	}
	if req.PageSize != nil {
		size = *req.PageSize
	}
	start, err1 := calendar.Parse(wshoto.DateLayout, req.StartDate)
	end, err2 := calendar.Parse(wshoto.DateLayout, req.EndDate)
	switch {
	case len(req.TagIDs) == 0:
		s.answer(w, c, 400, "tag_ids不能为空", nil)
		return
	case err1 != nil || err2 != nil:
		s.answer(w, c, 400, "日期格式错误,应为yyyy-MM-dd", nil)
		return
	case end.Before(start):
		s.answer(w, c, 400, "结束日期不能早于开始日期", nil)
		return
	case end.After(start.AddMonths(3)):
		s.answer(w, c, 400, "开始日期与结束日期间隔不能超过3个月", nil)
		return
	case idx < 1:
		s.answer(w, c, 400, "current_index最小值为1", nil)
		return
	case size < 1 || size > 100:
		s.answer(w, c, 400, "page_size最大值为100", nil)
		return
	}

	last := s.lastPublished(time.Now())
	byID := map[string]Tag{}
	for _, t := range s.Tags {
		byID[t.ID] = t
	}
	// Records in (day, tag) order; only the requested page is built.
	type slot struct {
		tag Tag
		day calendar.Date
	}
	var slots []slot
	for d := start; !d.After(end) && !d.After(last); d = d.AddDays(1) {
		for _, id := range req.TagIDs {
			if t, ok := byID[id]; ok {
				slots = append(slots, slot{t, d})
			}
		}
	}
	total := len(slots)
	lo := min((idx-1)*size, total)
	hi := min(lo+size, total)
	records := make([]map[string]any, 0, hi-lo)
	for _, sl := range slots[lo:hi] {
		records = append(records, s.record1(sl.tag, sl.day))
	}
	s.answer(w, c, 0, "请求成功", map[string]any{"total": total, "records": records})
}

// lastPublished is the newest day whose data exists at now: T+1, from
// PublishDelay after midnight.
func (s *Server) lastPublished(now time.Time) calendar.Date {
	last := calendar.LatestDailyDate(now.Add(-s.PublishDelay), s.Location)
	if s.PublishDelayOn != nil {
		today := calendar.LatestDailyDate(now, s.Location).AddDays(1)
		last = today.AddDays(-1)
		if now.Before(today.Start(s.Location).Add(s.PublishDelayOn(today))) {
			last = last.AddDays(-1)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.unpubEnd.IsZero() && s.unpubEnd.Before(last) {
		last = s.unpubEnd
	}
	return last
}

func (s *Server) record1(t Tag, d calendar.Date) map[string]any {
	var m map[string]any
	if s.Data != nil {
		m = s.Data(t, d)
	} else {
		m = DemoRecord(t, d)
	}
	m["tag_id"], m["tag_name"], m["ds"] = t.ID, t.Name, d.Format(wshoto.DateLayout)
	return m
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}

// DemoRecord is the synthetic record of tag on day d: a per-tag base that
// grows over the days with a weekly rhythm. The same inputs always give the
// same numbers, so tests can compute what the exporter must show.
func DemoRecord(t Tag, d calendar.Date) map[string]any {
	h := fnv32(t.ID)
	base := 300 + float64(h%2000)
	day := float64(d.DaysSince(calendar.Date{Year: 2000, Month: 1, Day: 1}) % 3650)
	if day < 0 {
		day += 3650
	}
	weekly := math.Sin(2 * math.Pi * math.Mod(day, 7) / 7)
	customers := math.Round(base + day*float64(h%5+1)*0.3 + 25*weekly)
	joined := math.Round(base/20 + 6*weekly + 6)
	left := math.Round(base/60 + 2*math.Cos(day))
	rate := func(x float64) string { return strconv.FormatFloat(math.Round(x*10000)/10000, 'f', 4, 64) }
	r := 0.97 - float64(h%7)/100
	return map[string]any{
		"total_customer_cnt":               int64(customers),
		"total_distinct_customer_cnt":      int64(customers * 0.96),
		"total_new_customer_cnt":           int64(joined),
		"total_distinct_new_customer_cnt":  int64(joined * 0.9),
		"total_loss_customer_cnt":          int64(left),
		"total_distinct_loss_customer_cnt": int64(left * 0.9),
		// Rates as the BigDecimal strings some answers carry, and as numbers.
		"sd_total_stock_customer_rate":   rate(r),
		"s7d_total_stock_customer_rate":  math.Round((r-0.06+0.01*weekly)*10000) / 10000,
		"s15d_total_stock_customer_rate": rate(r - 0.11),
		"s30d_total_stock_customer_rate": math.Round((r-0.17)*10000) / 10000,
		"total_stock_customer_rate":      rate(r - 0.25),
	}
}
