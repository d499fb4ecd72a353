package breaker

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfter reads the value of a Retry-After header (RFC 9110 §10.2.3):
// delay-seconds, or an HTTP-date in any of the three formats HTTP allows,
// taken relative to now. A date in the past gives 0. ok is false for an
// empty or malformed value; a delay too large for a Duration gives the
// largest one (Record caps it anyway).
func RetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > math.MaxInt64/uint64(time.Second) {
			return math.MaxInt64, true // only ErrRange is possible on digits
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
