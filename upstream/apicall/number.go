package apicall

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Number is a numeric field the API may send as a JSON number, as a string
// (Java BigDecimal), or as null. A null or empty value is not Valid and must
// not be shown as zero.
type Number struct {
	Value float64
	Valid bool
}

// UnmarshalJSON accepts 12, 0.95, "0.95", "", and null.
func (n *Number) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		*n = Number{}
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		unq, err := strconv.Unquote(s)
		if err != nil {
			return fmt.Errorf("number %s: %w", s, err)
		}
		s = strings.TrimSpace(unq)
		if s == "" {
			*n = Number{}
			return nil
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("not a number: %.40q", s)
	}
	*n = Number{Value: v, Valid: true}
	return nil
}
