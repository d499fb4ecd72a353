package e2e

// The prober the soak tests share: it reads a bundle's current files every
// probeEvery, as an app would, and checks them against the real consumer
// (a database login, a certificate's validity), keeps checking each
// replaced generation until it dies, and turns what it saw into figures.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// probeEvery is the prober's period, for the current files and for
	// every retired generation still alive.
	probeEvery = 100 * time.Millisecond
	// reloadWindow excuses a refused probe when the bundle changed less
	// than this before the refusal: the app reads the files when it is
	// told to, and a probe that read a generation just replaced (or raced
	// the swap) is not the sidecar's fault. Any other refusal of what the
	// files hold is a dead-credential probe.
	reloadWindow = 500 * time.Millisecond
	// retiredWatch bounds how long a replaced generation is probed for
	// its death.
	retiredWatch = 2 * time.Minute
)

// errDead marks a check that the consumer refused on the credentials
// themselves (wrong password, unknown user, expired certificate), as
// opposed to a consumer that could not be reached.
var errDead = errors.New("refused")

// soakDuration is how long a soak test probes: PHASE_SOAK (a Go duration:
// PHASE_SOAK=10m for a benchmark run, with a -timeout to match), by default
// 100s, enough for 5 token rollovers and 5 lease expiries.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("PHASE_SOAK")
	if s == "" {
		return 100 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Second {
		t.Fatalf("PHASE_SOAK=%q: want a duration of at least 10s, such as 10m", s)
	}
	return d
}

// checkFunc tells whether a bundle's files are live. id names the
// generation (a username, a serial); expiry is its end when the files say
// it (a certificate's NotAfter), else zero. err wraps errDead when the
// consumer refused the contents.
type checkFunc func(ctx context.Context, files map[string][]byte) (id string, expiry time.Time, err error)

// generation is one set of contents the bundle held.
type generation struct {
	n        int // 1 for the first seen: logs name generations by number, never by value
	files    map[string][]byte
	expiry   time.Time // known end, or zero
	first    time.Time // when it was first read
	replaced time.Time // when the bundle changed to the next; zero while current
	lastOK   time.Time // the last check it passed
	died     time.Time // its first refused check, in the files or retired
	inFile   bool      // died while the bundle still held it
}

// spell is a run of dead-credential probes with no live one between.
type spell struct{ from, to time.Time }

// prober probes one bundle.
type prober struct {
	name  string // for the figures
	dir   string // the bundle in output.dir
	files []string
	check checkFunc
	// revokeKills: the admin revoke ends the contents (leases do,
	// certificates do not).
	revokeKills bool

	mu          sync.Mutex
	gens        map[string]*generation
	cur         *generation
	probes, ok  int
	dead        int // refused outside the reload window and the revocation
	excused     int // refused within the reload window
	revoked     int // refused between the revoke and recovery
	errs        int // the consumer not reached
	firstErrs   []string
	spells      []spell
	inSpell     bool
	revokeFrom  time.Time // an admin revoke-prefix began
	revokeTo    time.Time // … and returned
	recoveredAt time.Time // the first live probe, started after revokeTo, of contents issued after revokeFrom
}

func newProber(name, dir string, files []string, check checkFunc) *prober {
	return &prober{name: name, dir: dir, files: files, check: check, gens: map[string]*generation{}}
}

// run probes the current files, and in a second goroutine every retired
// generation, until ctx ends.
func (p *prober) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); every(ctx, p.probe) }()
	go func() { defer wg.Done(); every(ctx, p.probeRetired) }()
	wg.Wait()
}

func every(ctx context.Context, f func(context.Context)) {
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// read reads every member through one open of the bundle directory, as an
// app that opens the directory once would, and reopens when a swap removed
// the version it opened. changed is the bundle's last change: the newest
// mtime of the bundle entry itself (the symlink a swap renames) and of its
// members.
func (p *prober) read() (files map[string][]byte, changed time.Time, err error) {
	for attempt := 0; ; attempt++ {
		files, changed, err = p.readOnce()
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 4 {
			return files, changed, err
		}
	}
}

func (p *prober) readOnce() (map[string][]byte, time.Time, error) {
	var changed time.Time
	if fi, err := os.Lstat(p.dir); err == nil {
		changed = fi.ModTime()
	}
	root, err := os.OpenRoot(p.dir)
	if err != nil {
		return nil, changed, err
	}
	defer root.Close()
	files := map[string][]byte{}
	for _, name := range p.files {
		b, err := root.ReadFile(name)
		if err != nil {
			return nil, changed, err
		}
		if fi, err := root.Stat(name); err == nil && fi.ModTime().After(changed) {
			changed = fi.ModTime()
		}
		files[name] = b
	}
	return files, changed, nil
}

// lastChange re-reads the bundle's change time after a refusal.
func (p *prober) lastChange() time.Time {
	_, changed, _ := p.readOnce()
	return changed
}

// probe checks what the bundle holds now. A bundle that cannot be read
// (after reopening) counts as refused: an app would fail the same way.
func (p *prober) probe(ctx context.Context) {
	start := time.Now()
	files, changed, err := p.read()
	var g *generation
	if err == nil {
		var id string
		var expiry time.Time
		id, expiry, err = p.check(ctx, files)
		g = p.generation(id, files, expiry, start, changed)
	} else {
		err = fmt.Errorf("read the bundle: %w (%w)", err, errDead)
	}
	end := time.Now()
	if ctx.Err() != nil {
		return // the test is over; a cancelled check says nothing
	}
	if errors.Is(err, errDead) {
		changed = laterOf(changed, p.lastChange())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes++
	gen := "-"
	if g != nil {
		gen = strconv.Itoa(g.n)
	}
	switch {
	case err == nil:
		p.ok++
		g.lastOK = end
		p.inSpell = false
		// Vault revokes a dead token's leases after the revoke returns, so
		// the old contents may still pass a moment: recovery is contents
		// issued after the revoke.
		if !p.revokeTo.IsZero() && p.recoveredAt.IsZero() && start.After(p.revokeTo) && g.first.After(p.revokeFrom) {
			p.recoveredAt = end
		}
	case !errors.Is(err, errDead):
		p.errs++
		p.noteErr(start, "generation %s: %v", gen, err)
	default:
		if g != nil && g.died.IsZero() {
			g.died, g.inFile = start, p.cur == g
		}
		switch {
		case p.inRevocation(end):
			p.revoked++
		case end.Sub(changed) < reloadWindow:
			p.excused++
		default:
			p.dead++
			if p.inSpell {
				p.spells[len(p.spells)-1].to = end
			} else {
				p.spells = append(p.spells, spell{start, end})
				p.inSpell = true
			}
			p.noteErr(start, "dead: generation %s: %v", gen, err)
		}
	}
}

// generation finds or adds the generation id, read at start from a bundle
// last changed at changed.
func (p *prober) generation(id string, files map[string][]byte, expiry, start, changed time.Time) *generation {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.gens[id]; g != nil {
		return g
	}
	g := &generation{n: len(p.gens) + 1, files: files, expiry: expiry, first: start}
	p.gens[id] = g
	if prev := p.cur; prev != nil {
		// The swap happened between the last read of prev and this one;
		// the bundle's mtime says when.
		prev.replaced = start
		if changed.After(prev.first) && changed.Before(start) {
			prev.replaced = changed
		}
	}
	p.cur = g
	return g
}

// noteErr keeps the first few problems for the log; p.mu is held.
func (p *prober) noteErr(at time.Time, format string, args ...any) {
	if len(p.firstErrs) < 8 {
		p.firstErrs = append(p.firstErrs, at.Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
}

// inRevocation: from the admin revoke until the first live probe after it;
// p.mu is held.
func (p *prober) inRevocation(at time.Time) bool {
	return !p.revokeFrom.IsZero() && !at.Before(p.revokeFrom) && (p.recoveredAt.IsZero() || at.Before(p.recoveredAt))
}

// probeRetired checks each replaced generation that is not known dead: a
// known expiry is its death; otherwise the consumer decides.
func (p *prober) probeRetired(ctx context.Context) {
	p.mu.Lock()
	var retired []*generation
	for _, g := range p.gens {
		if !g.replaced.IsZero() && g.died.IsZero() && time.Since(g.replaced) < retiredWatch {
			retired = append(retired, g)
		}
	}
	p.mu.Unlock()
	for _, g := range retired {
		if !g.expiry.IsZero() {
			if time.Now().After(g.expiry) {
				p.mu.Lock()
				g.died = g.expiry
				p.mu.Unlock()
			}
			continue
		}
		start := time.Now()
		_, _, err := p.check(ctx, g.files)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		switch {
		case err == nil:
			g.lastOK = time.Now()
		case errors.Is(err, errDead):
			g.died = start
		}
		p.mu.Unlock()
	}
}

// revoke marks the admin revocation that ran from from to to.
func (p *prober) revoke(from, to time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokeFrom, p.revokeTo = from, to
}

// figures is what a prober saw, for the log and the assertions.
type figures struct {
	probes, ok, dead, excused, revoked, errs int
	spells                                   int
	longestSpell                             time.Duration
	generations                              int
	replacements                             int // generations replaced in the files
	expiries                                 int // generations seen to die on their own (not by the revoke)
	margins                                  []time.Duration
	reloadMargins                            []time.Duration
	recovery                                 time.Duration // revoke to the first live probe after it; -1 never
	firstErrs                                []string
}

// figures sums up; reloads are the times the app was told. A generation's
// margin is its death minus the time the bundle changed away from it
// (negative: the files held it dead); its reload margin is its death minus
// the first reload after that change. Generations the revoke killed are
// left out: the admin ended those, not their lease.
func (p *prober) figures(reloads []time.Time, end time.Time) figures {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := figures{probes: p.probes, ok: p.ok, dead: p.dead, excused: p.excused, revoked: p.revoked, errs: p.errs,
		spells: len(p.spells), generations: len(p.gens), recovery: -1, firstErrs: slices.Clone(p.firstErrs)}
	for _, s := range p.spells {
		f.longestSpell = max(f.longestSpell, s.to.Sub(s.from))
	}
	if !p.recoveredAt.IsZero() {
		f.recovery = p.recoveredAt.Sub(p.revokeTo)
	}
	for _, g := range p.gens {
		if !g.replaced.IsZero() {
			f.replacements++
		}
		if g.died.IsZero() || p.killedByRevoke(g) {
			continue
		}
		f.expiries++
		replaced := g.replaced
		if replaced.IsZero() {
			replaced = end // dead in the files until the end
		}
		f.margins = append(f.margins, g.died.Sub(replaced))
		// The first reload at or after the change.
		if i, _ := slices.BinarySearchFunc(reloads, replaced, time.Time.Compare); i < len(reloads) {
			f.reloadMargins = append(f.reloadMargins, g.died.Sub(reloads[i]))
		}
	}
	slices.Sort(f.margins)
	slices.Sort(f.reloadMargins)
	return f
}

// timeline logs every generation's first read, replacement and death,
// relative to begin.
func (p *prober) timeline(t *testing.T, begin time.Time) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	gens := slices.SortedFunc(maps.Values(p.gens), func(a, b *generation) int { return a.n - b.n })
	rel := func(at time.Time) string {
		if at.IsZero() {
			return "-"
		}
		return "+" + at.Sub(begin).Round(10*time.Millisecond).String()
	}
	var b strings.Builder
	for _, g := range gens {
		fmt.Fprintf(&b, "\n  %d: read %s, replaced %s, last live %s, dead %s", g.n, rel(g.first), rel(g.replaced), rel(g.lastOK), rel(g.died))
		switch {
		case !g.died.IsZero() && p.killedByRevoke(g):
			b.WriteString(" (revoked)")
		case g.inFile:
			b.WriteString(" (dead in the files)")
		}
	}
	revoke := ""
	if !p.revokeFrom.IsZero() {
		revoke = fmt.Sprintf(", revoke %s–%s", rel(p.revokeFrom), rel(p.revokeTo))
	}
	t.Logf("%s generations%s:%s", p.name, revoke, b.String())
}

// killedByRevoke: g was issued before the revoke and died within 5 s of it
// (Vault revokes a dead token's leases in the background); p.mu is held.
func (p *prober) killedByRevoke(g *generation) bool {
	return p.revokeKills && !p.revokeFrom.IsZero() && g.first.Before(p.revokeFrom) &&
		!g.died.Before(p.revokeFrom) && g.died.Before(p.revokeTo.Add(5*time.Second))
}

func (f figures) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d probes: %d live, %d dead (%d spells, longest %v), %d excused in the %v reload window, %d during the revocation, %d errors",
		f.probes, f.ok, f.dead, f.spells, f.longestSpell.Round(time.Millisecond), f.excused, reloadWindow, f.revoked, f.errs)
	fmt.Fprintf(&b, "; %d generations, %d replaced, %d expiries observed", f.generations, f.replacements, f.expiries)
	if len(f.margins) > 0 {
		fmt.Fprintf(&b, "; margin replaced→dead min %v median %v", f.margins[0].Round(time.Millisecond), f.margins[len(f.margins)/2].Round(time.Millisecond))
	}
	if len(f.reloadMargins) > 0 {
		fmt.Fprintf(&b, ", reload→dead min %v median %v", f.reloadMargins[0].Round(time.Millisecond), f.reloadMargins[len(f.reloadMargins)/2].Round(time.Millisecond))
	}
	if f.recovery >= 0 {
		fmt.Fprintf(&b, "; recovered %v after the revoke", f.recovery.Round(time.Millisecond))
	}
	return b.String()
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
