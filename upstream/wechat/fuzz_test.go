package wechat

import (
	"math"
	"testing"
	"time"
)

// FuzzDecodeRetain feeds arbitrary answers to the retain decoder, error
// check included: it must never panic, and an accepted answer is either
// empty (not published) or the asked period with both lists, non-negative
// keys and finite values. Seeds: testdata/fuzz/FuzzDecodeRetain.
func FuzzDecodeRetain(f *testing.F) {
	f.Add([]byte(`{"ref_date":"20261109-20261115","visit_uv_new":[{"key":0,"value":5464}],"visit_uv":[{"key":0,"value":"55500"}]}`), "20261109-20261115")
	c, err := New(Options{BaseURL: "https://api.weixin.test", AppID: "wxfuzz", Secret: "fuzz", Location: time.UTC})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, want string) {
		if err := c.checkError(b); err != nil {
			return
		}
		r, err := decodeRetain(b, want)
		if err != nil {
			return
		}
		if len(r.New) == 0 && len(r.Active) == 0 {
			return
		}
		if r.RefDate != want || len(r.New) == 0 || len(r.Active) == 0 {
			t.Fatalf("accepted %+v for %q", r, want)
		}
		for _, m := range []map[int]float64{r.New, r.Active} {
			for k, v := range m {
				if k < 0 || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("accepted key %d value %v", k, v)
				}
			}
		}
	})
}
