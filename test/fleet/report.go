package fleet

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Figures are the load figures of a run, in requests per second or as
// ratios to the healthy mean. Windows are whole seconds since the start.
type Figures struct {
	Healthy        float64 // mean req/s over [Refresh, Healthy): from the second cycle on
	PeakToMean     float64 // the busiest second of that window / Healthy
	FirstSecond    int     // requests in second 0
	FirstCyclePeak int     // the busiest second of [0, Refresh)
	Outage         float64 // outage mean / Healthy
	OutageFirst5   float64 // mean of the outage's first 5 s / Healthy
	// Late is the second half of the outage: its requests, the healthy
	// count of a window as long, and their ratio.
	Late, LateHealthy float64
	LateRatio         float64
	RecoveryPeak      float64 // the busiest second of the recovery window / Healthy
	// HealthyByClass is the healthy mean of each class.
	HealthyByClass []float64
}

// bounds are the phase boundaries in seconds: the first cycle ends at r,
// healthy at h, the outage at o, recovery at e.
func (r *Result) bounds() (c, h, o, e int) {
	op := r.Options
	c, h = secs(op.Refresh), secs(op.Healthy)
	o = h + secs(op.Outage)
	return min(c, h), h, o, o + secs(op.Recovery)
}

// Figures computes the figures from the series.
func (r *Result) Figures() Figures {
	s := r.Series
	c, h, o, e := r.bounds()
	f := Figures{Healthy: s.Mean(c, h), FirstCyclePeak: s.Max(0, c)}
	if len(s.Sec) > 0 {
		f.FirstSecond = s.Total(0)
	}
	mid := h + (o-h+1)/2
	f.Late = float64(s.Sum(mid, o))
	f.LateHealthy = f.Healthy * float64(o-mid)
	for k := range s.Classes {
		f.HealthyByClass = append(f.HealthyByClass, float64(s.ClassSum(k, c, h))/float64(max(h-c, 1)))
	}
	if f.Healthy == 0 {
		return f
	}
	f.PeakToMean = float64(s.Max(c, h)) / f.Healthy
	f.Outage = s.Mean(h, o) / f.Healthy
	f.OutageFirst5 = s.Mean(h, min(h+5, o)) / f.Healthy
	f.LateRatio = f.Late / f.LateHealthy
	f.RecoveryPeak = float64(s.Max(o, e)) / f.Healthy
	return f
}

// Timeline is the per-second counts as a text table, one line a second.
func (r *Result) Timeline() string {
	c, h, o, _ := r.bounds()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: requests per second\n%4s  %-8s %6s", r.Name, "t", "phase", "total")
	for _, cl := range r.Series.Classes {
		fmt.Fprintf(&b, " %6s", cl)
	}
	b.WriteString("\n")
	for i, row := range r.Series.Sec {
		phase := "recovery"
		switch {
		case i < c:
			phase = "start"
		case i < h:
			phase = "healthy"
		case i < o:
			phase = "outage"
		}
		fmt.Fprintf(&b, "%4d  %-8s %6d", i, phase, r.Series.Total(i))
		for _, v := range row {
			fmt.Fprintf(&b, " %6d", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// CSV is the per-second counts as CSV: second, total, then each class.
func (r *Result) CSV() string {
	var b strings.Builder
	b.WriteString("second,total," + strings.Join(r.Series.Classes, ",") + "\n")
	for i, row := range r.Series.Sec {
		fmt.Fprintf(&b, "%d,%d", i, r.Series.Total(i))
		for _, v := range row {
			fmt.Fprintf(&b, ",%d", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Table is a markdown table of the figures, one column per result.
func Table(results ...*Result) string {
	figs := make([]Figures, len(results))
	for i, r := range results {
		figs[i] = r.Figures()
	}
	rows := []struct {
		name string
		cell func(r *Result, f Figures) string
	}{
		{"pods × paths, refresh", func(r *Result, _ Figures) string {
			return fmt.Sprintf("%d × %d, %s", r.Options.N, r.Options.Paths, r.Options.Refresh)
		}},
		{"outage", func(r *Result, _ Figures) string {
			return fmt.Sprintf("%s for %s", describe(r.Options), r.Options.Outage)
		}},
		{"start → every file written", func(r *Result, _ Figures) string { return dur(r.Ready) }},
		{"first second after start", func(_ *Result, f Figures) string { return fmt.Sprintf("%d req/s", f.FirstSecond) }},
		{"busiest second of the first cycle", func(_ *Result, f Figures) string { return fmt.Sprintf("%d req/s", f.FirstCyclePeak) }},
		{"healthy mean, from the second cycle on", func(_ *Result, f Figures) string { return fmt.Sprintf("%.1f req/s", f.Healthy) }},
		{"healthy mean by class", func(r *Result, f Figures) string {
			var parts []string
			for k, cl := range r.Series.Classes {
				parts = append(parts, fmt.Sprintf("%s %.1f", cl, f.HealthyByClass[k]))
			}
			return strings.Join(parts, ", ")
		}},
		{"busiest second / mean, from the second cycle on", func(_ *Result, f Figures) string { return ratio(f.PeakToMean) }},
		{"outage mean / healthy", func(_ *Result, f Figures) string { return ratio(f.Outage) }},
		{"first 5 s of the outage / healthy", func(_ *Result, f Figures) string { return ratio(f.OutageFirst5) }},
		{"second half of the outage / healthy", func(_ *Result, f Figures) string {
			return fmt.Sprintf("%s (%.0f vs %.0f)", ratio(f.LateRatio), f.Late, f.LateHealthy)
		}},
		{"recovery peak / healthy", func(_ *Result, f Figures) string { return ratio(f.RecoveryPeak) }},
		{"files kept during the outage", func(r *Result, _ Figures) string {
			if r.Options.Fault == Quota {
				return "— (some reads pass)"
			}
			return fmt.Sprintf("%d of %d pods", r.Options.N-len(r.Lost), r.Options.N)
		}},
		{"forwarded during the outage / healthy", func(r *Result, f Figures) string {
			if r.Options.Fault != Quota || f.Healthy == 0 {
				return "—"
			}
			return ratio(float64(r.Passed) / r.Options.Outage.Seconds() / f.Healthy)
		}},
		{"outage end → new values, median / slowest pod", func(r *Result, _ Figures) string { return freshness(r) }},
	}
	var b strings.Builder
	b.WriteString("| |")
	for _, r := range results {
		fmt.Fprintf(&b, " %s |", r.Name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(results)) + "\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s |", row.name)
		for i, r := range results {
			fmt.Fprintf(&b, " %s |", row.cell(r, figs[i]))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func describe(o Options) string {
	switch o.Fault {
	case Unavailable:
		return "HTTP 503"
	case RateLimited:
		return fmt.Sprintf("HTTP 429, Retry-After %s", o.RetryAfter)
	case Throttled:
		return "HTTP 400 ThrottlingException"
	case Drop:
		return "connections reset"
	case Quota:
		return fmt.Sprintf("a quota of %.0f %% of the healthy mean (throttled beyond)", 100*o.Quota)
	default:
		return o.Fault.String()
	}
}

func ratio(x float64) string { return fmt.Sprintf("%.2f×", x) }

func dur(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func freshness(r *Result) string {
	var ok []time.Duration
	for _, d := range r.Fresh {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	if len(ok) == 0 {
		return fmt.Sprintf("none within %s", r.Options.FreshWithin)
	}
	slices.Sort(ok)
	s := fmt.Sprintf("%s / %s", dur(ok[len(ok)/2]), dur(ok[len(ok)-1]))
	if n := len(r.Fresh) - len(ok); n > 0 {
		s += fmt.Sprintf(", %d pods not within %s", n, r.Options.FreshWithin)
	}
	return s
}
