package breaker_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/breaker"
)

var errUnavailable = errors.New("503")

// A caller asks before each request, parks the request for the wait it is
// told, and records how the request went. OnChange logs and sets the gauge.
func Example() {
	b := breaker.New(breaker.Config{
		Rand: func(n int64) int64 { return n - 1 }, // the ceiling, for a stable output
		OnChange: func(c breaker.Change) {
			switch {
			case c.From == breaker.Closed:
				fmt.Printf("source down; next probe in %v\n", c.Next.Sub(c.At))
			case c.To == breaker.Closed:
				fmt.Printf("source answers again after %v\n", c.At.Sub(c.Since))
			}
			// gauge.WithLabelValues(source).Set(float64(c.To))
		},
	})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fetch := func(ok bool) {
		t, wait := b.Allow(now)
		if wait > 0 {
			fmt.Printf("held back for %v\n", wait)
			return
		}
		err := errUnavailable
		if ok {
			err = nil
		}
		r := breaker.Success
		if err != nil {
			r = breaker.Failure // the caller classifies: 5xx, 429, refused, timeout
		}
		b.Record(now, t, r, 0)
	}
	for range 3 {
		fetch(false)
	}
	fetch(true)
	now = now.Add(time.Second)
	fetch(true) // the probe
	fetch(true)
	// Output:
	// source down; next probe in 1s
	// held back for 6s
	// source answers again after 1s
}
