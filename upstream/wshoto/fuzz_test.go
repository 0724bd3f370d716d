package wshoto

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
)

// FuzzDecodePage feeds arbitrary answers to the analysis decoder: it must
// never panic, and what it accepts must be usable as is (finite numbers,
// records with a tag and a day). Seeds: testdata/fuzz/FuzzDecodePage.
func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"code":0,"msg":"请求成功","data":{"total":1,"records":[{"tag_id":"t1","tag_name":"新客","ds":"2026-11-20","total_customer_cnt":"12","sd_total_stock_customer_rate":0.95}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pg, err := decodePage(b)
		if err != nil {
			return
		}
		if pg.Total == nil || *pg.Total < 0 {
			t.Fatalf("accepted a page without a usable total: %+v", pg)
		}
		for _, w := range pg.Records {
			r, err := w.record()
			if err != nil {
				continue
			}
			if r.TagID == "" || r.Date.IsZero() {
				t.Fatalf("accepted record without tag or day: %+v", r)
			}
			for _, n := range append([]Number{r.Customers, r.DistinctCustomers, r.Joined, r.DistinctJoined, r.Left, r.DistinctLeft}, r.Retention[:]...) {
				if n.Valid && (math.IsNaN(n.Value) || math.IsInf(n.Value, 0)) {
					t.Fatalf("accepted a non-finite number: %+v", r)
				}
			}
		}
	})
}

// FuzzNumberAsString checks that a rate sent as a JSON string decodes to
// exactly the number sent as a JSON number.
func FuzzNumberAsString(f *testing.F) {
	for _, v := range []float64{0, 0.95, 1, 12, 1e-9, 123456789.25, -0.5} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		num, _ := json.Marshal(v)
		str := strconv.Quote(string(num))
		var a, b Number
		if err := json.Unmarshal(num, &a); err != nil {
			t.Fatalf("%s: %v", num, err)
		}
		if err := json.Unmarshal([]byte(str), &b); err != nil {
			t.Fatalf("%s: %v", str, err)
		}
		if a != b || !a.Valid || a.Value != v {
			t.Fatalf("%s → %+v, %s → %+v, want %v", num, a, str, b, v)
		}
	})
}
