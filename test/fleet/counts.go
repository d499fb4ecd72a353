package fleet

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// Counts counts requests per whole second since Begin, and per class.
type Counts struct {
	classify Classifier
	classes  []string

	mu    sync.Mutex
	start time.Time
	sec   [][]int // [second][class]
}

// NewCounts counts in the classes that classify returns; a name not in
// classes is counted in the last class.
func NewCounts(classify Classifier, classes ...string) *Counts {
	return &Counts{classify: classify, classes: classes, start: time.Now()}
}

// Begin clears the counts and makes t second 0.
func (c *Counts) Begin(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start, c.sec = t, nil
}

// Add counts r, arrived at at.
func (c *Counts) Add(at time.Time, r *http.Request) {
	k := slices.Index(c.classes, c.classify(r))
	if k < 0 {
		k = len(c.classes) - 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := int(at.Sub(c.start) / time.Second)
	if s < 0 {
		s = 0
	}
	for len(c.sec) <= s {
		c.sec = append(c.sec, make([]int, len(c.classes)))
	}
	c.sec[s][k]++
}

// Series is a copy of the counts of seconds [0, n).
func (c *Counts) Series(n int) Series {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Series{Classes: slices.Clone(c.classes), Sec: make([][]int, n)}
	for i := range n {
		s.Sec[i] = make([]int, len(c.classes))
		if i < len(c.sec) {
			copy(s.Sec[i], c.sec[i])
		}
	}
	return s
}

// Series is requests per second, by class.
type Series struct {
	Classes []string
	Sec     [][]int // [second][class]
}

// Total is the number of requests in second i.
func (s Series) Total(i int) int {
	n := 0
	for _, v := range s.Sec[i] {
		n += v
	}
	return n
}

// Sum is the number of requests in seconds [from, to).
func (s Series) Sum(from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		n += s.Total(i)
	}
	return n
}

// ClassSum is the number of requests of class k in seconds [from, to).
func (s Series) ClassSum(k, from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		n += s.Sec[i][k]
	}
	return n
}

// Mean is requests per second over [from, to).
func (s Series) Mean(from, to int) float64 {
	if to <= from {
		return 0
	}
	return float64(s.Sum(from, to)) / float64(to-from)
}

// Max is the busiest second in [from, to).
func (s Series) Max(from, to int) int {
	m := 0
	for i := from; i < to; i++ {
		m = max(m, s.Total(i))
	}
	return m
}
