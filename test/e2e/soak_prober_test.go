package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestProberClassifies runs the soak prober against a bundle this test
// publishes the sidecar's way (a directory symlink swapped by rename, the old
// version removed) and a consumer it controls, so that the soak figures can
// be trusted: a generation killed after its replacement has a positive
// margin, one killed while the files hold it is counted dead with a
// negative margin, and failures after the revoke until new contents arrive
// are the revocation's, not dead probes.
func TestProberClassifies(t *testing.T) {
	out := t.TempDir()
	bundle := filepath.Join(out, "b")
	seq := 0
	publish := func(id string) {
		seq++
		dir := filepath.Join(out, fmt.Sprintf("..b_%d", seq))
		writeFile(t, filepath.Join(dir, "id"), id)
		link := filepath.Join(out, fmt.Sprintf("..b_%d.link", seq))
		if err := os.Symlink(filepath.Base(dir), link); err != nil {
			t.Fatal(err)
		}
		old, _ := os.Readlink(bundle)
		if err := os.Rename(link, bundle); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			os.RemoveAll(filepath.Join(out, old))
		}
	}
	var mu sync.Mutex
	dead := map[string]bool{}
	kill := func(id string) { mu.Lock(); dead[id] = true; mu.Unlock() }
	p := newProber("fake", bundle, []string{"id"}, func(_ context.Context, files map[string][]byte) (string, time.Time, error) {
		id := string(files["id"])
		mu.Lock()
		defer mu.Unlock()
		if dead[id] {
			return id, time.Time{}, fmt.Errorf("%w: %s is dead", errDead, id)
		}
		return id, time.Time{}, nil
	})
	p.revokeKills = true

	// A phase long enough for several probes even on a loaded machine.
	const phase = time.Second
	begin := time.Now()
	publish("A")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	time.Sleep(phase)
	publish("B")
	time.Sleep(phase / 2)
	kill("A") // retired: margin about +phase/2
	time.Sleep(phase)
	kill("B") // in the files for a phase: dead probes
	time.Sleep(phase)
	publish("C")
	time.Sleep(phase)
	from := time.Now()
	kill("C")
	p.revoke(from, time.Now())
	time.Sleep(phase / 2)
	publish("D") // recovery
	time.Sleep(phase)
	cancel()
	<-done

	f := p.figures(nil, time.Now())
	t.Logf("%v", f)
	p.timeline(t, begin)
	if f.generations != 4 || f.replacements != 3 {
		t.Errorf("generations %d, replaced %d; want 4, 3", f.generations, f.replacements)
	}
	if f.dead < 3 || f.spells != 1 || f.longestSpell < phase/2 {
		t.Errorf("dead %d in %d spells (longest %v); want >= 3 in 1 spell of about %v", f.dead, f.spells, f.longestSpell, phase)
	}
	if f.revoked < 1 || f.recovery < 0 || f.recovery > phase {
		t.Errorf("revoked %d, recovery %v; want >= 1 and about %v", f.revoked, f.recovery, phase/2)
	}
	// A and B have margins; C was revoked, D lives.
	if len(f.margins) != 2 || f.margins[0] > -phase/2 || f.margins[1] < phase/4 {
		t.Errorf("margins %v; want one about -%v (B) and one about +%v (A)", f.margins, phase, phase/2)
	}
	if f.expiries != 2 || f.errs != 0 {
		t.Errorf("expiries %d, errors %d; want 2, 0", f.expiries, f.errs)
	}
}
