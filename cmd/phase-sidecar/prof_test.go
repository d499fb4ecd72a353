package main

import (
	"io"
	"os"
	"runtime/pprof"
	"testing"
)

func TestProfileOnce(t *testing.T) {
	cfg := os.Getenv("PROF_CFG")
	if cfg == "" {
		t.Skip()
	}
	f, _ := os.Create("/tmp/cpu.prof")
	pprof.StartCPUProfile(f)
	code := run([]string{"once", "--config", cfg, "--log-level", "warn"}, io.Discard, os.Stderr)
	pprof.StopCPUProfile()
	mf, _ := os.Create("/tmp/mem.prof")
	pprof.Lookup("allocs").WriteTo(mf, 0)
	if code != 0 {
		t.Fatal(code)
	}
}
