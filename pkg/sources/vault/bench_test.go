package vault

import (
	"context"
	"fmt"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"log/slog"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// kvPaths writes paths KV v2 secrets of fields fields each and returns the
// refs of every field, grouped by object as the engine groups them.
func kvPaths(b *testing.B, d *devServer, paths, fields int) (mount string, groups [][]sources.Ref) {
	b.Helper()
	mount = unique("kv")
	d.enable(b, mount, "kv", map[string]string{"version": "2"})
	for p := range paths {
		data := map[string]any{}
		for f := range fields {
			data[fmt.Sprintf("f%d", f)] = fmt.Sprintf("value-%d-%d", p, f)
		}
		d.write(b, fmt.Sprintf("%s/data/p%d", mount, p), map[string]any{"data": data})
		var g []sources.Ref
		for f := range fields {
			g = append(g, testenv.Ref(b, fmt.Sprintf("vault://%s/p%d#f%d", mount, p, f)))
		}
		groups = append(groups, g)
	}
	return mount, groups
}

// BenchmarkFetch1000Over100Paths runs sync cycles of 1000 secrets spread
// over 100 KV v2 paths (10 fields each) against the dev server and reports
// the requests each cycle costs (goal: 100, one per path).
func BenchmarkFetch1000Over100Paths(b *testing.B) {
	d := vaultDev(b)
	_, groups := kvPaths(b, d, 100, 10)
	s := newSource(b, d, Config{}, Options{Logger: slog.New(slog.DiscardHandler)})
	c := countRequests(s)
	ctx := context.Background()
	cycle := func() {
		for _, g := range groups {
			obj, err := s.Fetch(ctx, g[0])
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range g {
				if _, err := obj.Select(r.Field); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	cycle() // login and mount lookup
	start, cycles := c.total.Load(), 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cycle()
		cycles++
	}
	b.ReportMetric(float64(c.total.Load()-start)/float64(cycles), "requests/cycle")
	b.ReportMetric(float64(cycles*1000)/b.Elapsed().Seconds(), "secrets/s")
}

// BenchmarkKV2MetadataFirst measures the alternative the source does not
// take: read metadata to learn the current version, then data only when it
// changed. changed is the share of paths written between cycles.
func BenchmarkKV2MetadataFirst(b *testing.B) {
	d := vaultDev(b)
	mount, groups := kvPaths(b, d, 100, 10)
	for _, changed := range []int{0, 100} {
		b.Run(fmt.Sprintf("changed=%d%%", changed), func(b *testing.B) {
			s := newSource(b, d, Config{}, Options{Logger: slog.New(slog.DiscardHandler)})
			c := countRequests(s)
			if _, err := s.auth.ensure(context.Background()); err != nil {
				b.Fatal(err)
			}
			seen := map[string]string{}
			start, cycles := c.total.Load(), int64(0)
			for b.Loop() {
				if changed > 0 {
					b.StopTimer()
					for p := range groups {
						d.write(b, fmt.Sprintf("%s/data/p%d", mount, p), map[string]any{"data": map[string]any{"f0": fmt.Sprint(cycles)}})
					}
					b.StartTimer()
				}
				for p := range groups {
					path := fmt.Sprintf("%s/p%d", mount, p)
					meta, err := s.client.Logical().Read(mount + "/metadata/" + path[len(mount)+1:])
					if err != nil {
						b.Fatal(err)
					}
					v := fmt.Sprint(meta.Data["current_version"])
					if seen[path] == v {
						continue
					}
					seen[path] = v
					if _, err := s.client.Logical().Read(mount + "/data/" + path[len(mount)+1:]); err != nil {
						b.Fatal(err)
					}
				}
				cycles++
			}
			b.ReportMetric(float64(c.total.Load()-start)/float64(cycles), "requests/cycle")
		})
	}
}
