package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/engine"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/reload"
	"github.com/phase-sidecar/phase-sidecar/pkg/server"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// loadConfig loads the config and checks that every source kind it uses is
// available; every problem is a usage error (exit 2).
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.LoadWith(path, config.Options{Available: available})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// load builds the logger and loads the config, as run and once do first.
func (c common) load(stderr io.Writer) (*slog.Logger, *config.Config, error) {
	log, err := newLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(c.config)
	if err != nil {
		return nil, nil, err
	}
	return log, cfg, nil
}

// pipeline is everything run and once share.
type pipeline struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	sink    *sink.Dir
	srcs    map[string]sources.Source
	checks  []check
	engine  *engine.Engine
	reload  *reload.Reloader
}

// setup builds everything run and once share; only run (daemon) tells the
// app about changes. notifier, when set, replaces the configured reload
// method (the supervised app).
func setup(ctx context.Context, cfg *config.Config, log *slog.Logger, daemon bool, notifier reload.Notifier) (*pipeline, error) {
	var err error
	v, r := buildVersion()
	p := &pipeline{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	metrics.Standard(p.reg)
	p.metrics = metrics.New(p.reg, v, r)
	log.Info("starting", "version", v, "path", cfg.Path)
	p.sink, err = sink.Open(sink.Options{Dir: cfg.Output.Dir, AllowDisk: cfg.Output.AllowDisk, Logger: log})
	if errors.Is(err, sink.ErrDisk) {
		return nil, usageError{err} // a configuration problem: exit 2
	}
	if err != nil {
		return nil, err
	}
	p.srcs, p.checks, err = buildSources(ctx, cfg, log, p.metrics)
	if err != nil {
		p.sink.Close()
		return nil, err
	}
	var onChange func(engine.Change)
	rc := reloadConfig(cfg)
	if daemon {
		p.reload, err = reload.New(rc, reload.Options{Logger: log, Metrics: p.metrics, Notifier: notifier})
		if err != nil {
			p.sink.Close()
			return nil, usageError{err}
		}
		onChange = func(c engine.Change) { p.reload.Changed(c.Secrets, c.Initial) }
	}
	p.engine, err = engine.New(engine.Options{
		Config: cfg, Sources: p.srcs, Sink: p.sink, Metrics: p.metrics, Logger: log, OnChange: onChange,
		ReloadLatency: rc.Latency(),
	})
	if err != nil {
		p.sink.Close()
		return nil, usageError{err}
	}
	return p, nil
}

func cmdRun(args []string, _, stderr io.Writer) error {
	var c common
	var listen string
	fs := newFlags("run", "run --config FILE [--listen ADDR] [--log-level L] [--log-format F] [-- APP ARGS…]", stderr, &c, true)
	fs.StringVar(&listen, "listen", "", "address for /metrics, /healthz, /readyz, /v1/status (overrides listen:)")
	if err := parse(fs, args, &c); err != nil {
		return err
	}
	app := fs.Args()
	if len(app) > 0 && !slices.Contains(args, "--") {
		return usageError{fmt.Errorf("unexpected argument %q (to supervise an app, put it after --)", app[0])}
	}
	log, cfg, err := c.load(stderr)
	if err != nil {
		return err
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if len(app) == 0 {
		ctx, stop := signalContext()
		defer stop()
		return serve(ctx, cfg, log, nil)
	}
	return supervise(cfg, log, app)
}

// supervise runs the sidecar with app as its child (reload.Supervisor):
// started once every required secret is written, signalled or restarted on
// change, given the sidecar's signals, and stopped if the sidecar fails; its
// exit ends the sidecar with the child's exit code.
func supervise(cfg *config.Config, log *slog.Logger, app []string) error {
	if r := cfg.Reload; r.Signal != nil || r.HTTP != nil || r.Exec != nil {
		return usageError{errors.New("a supervised app (run … -- APP) is reloaded by reload.supervise; remove reload.signal, reload.http and reload.exec")}
	}
	o := supervisorOptions(cfg.Reload.Supervise)
	o.Logger, o.Env, o.Stdin, o.Stdout, o.Stderr = log, reload.ChildEnv(os.Environ()), os.Stdin, os.Stdout, os.Stderr
	sup, err := reload.NewSupervisor(app, o)
	if err != nil {
		return usageError{err}
	}
	ctx, stop := sup.ForwardSignals(context.Background())
	defer stop()
	if err := serve(ctx, cfg, log, sup); err != nil {
		return err // serve's sup.Run stopped the app and waited for it
	}
	return exitCode(sup.Wait())
}

// exitCode makes run exit with the supervised app's code.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("the app exited with code %d", int(e)) }

// serve is the daemon: sources, engine, reloader and HTTP until ctx ends;
// with sup, the supervised app too, which is then the reload method.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, sup *reload.Supervisor) error {
	var notifier reload.Notifier
	if sup != nil {
		notifier = sup
	}
	p, err := setup(ctx, cfg, log, true, notifier)
	if err != nil {
		return err
	}
	defer p.sink.Close()
	srv, err := server.New(server.Options{Addr: p.cfg.Listen, Gatherer: p.reg, Status: statusView{p}, Logger: p.log})
	if err != nil {
		return err
	}
	p.log.Info("serving", "component", "http", "path", srv.Addr())
	if err := p.reload.Check(); err != nil {
		p.log.Warn("reload target not usable yet; changes will retry", "component", "reload", "err", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	for kind, src := range p.srcs {
		if r, ok := src.(sources.Runner); ok {
			g.Go(func() error {
				if err := r.Run(gctx); err != nil {
					return fmt.Errorf("%s source: %w", kind, err)
				}
				return nil
			})
		}
	}
	g.Go(func() error { diagnose(gctx, p.checks, p.log); return nil })
	g.Go(func() error { return p.reload.Run(gctx) })
	g.Go(func() error {
		// The reloader decides once, when the first sync is complete,
		// whether the app needs to hear of it (on_initial_sync).
		select {
		case <-p.engine.Ready():
			var written []string
			for _, s := range p.engine.Status() {
				if s.Written {
					written = append(written, s.Name)
				}
			}
			p.reload.FirstSync(written)
			// The first sync's garbage is the largest the sidecar makes;
			// hand it back to the OS now rather than when the background
			// scavenger gets to it (slower on a busy node), so a sidecar
			// idles small from the start.
			debug.FreeOSMemory()
		case <-gctx.Done():
		}
		return nil
	})
	if sup != nil {
		g.Go(func() error { return sup.Run(gctx, p.engine.Ready()) })
	}
	g.Go(func() error { return p.engine.Run(gctx) })
	err = g.Wait()
	p.log.Info("stopped; files stay in place", "path", p.cfg.Output.Dir)
	return err
}

func cmdOnce(args []string, _, stderr io.Writer) error {
	var c common
	fs := newFlags("once", "once --config FILE [--log-level L] [--log-format F]", stderr, &c, true)
	if err := parse(fs, args, &c); err != nil {
		return err
	}
	log, cfg, err := c.load(stderr)
	if err != nil {
		return err
	}
	// once is a burst before the app starts, often under an init
	// container's memory limit: trade a few more collections (no measurable
	// wall time, docs/benchmarks.md) for a lower peak. GOGC overrides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(30)
	}
	ctx, stop := signalContext()
	defer stop()
	p, err := setup(ctx, cfg, log, false, nil)
	if err != nil {
		return err
	}
	defer p.sink.Close()
	return p.engine.Once(ctx)
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlags("validate", "validate --config FILE", stderr, &c, false)
	if err := parse(fs, args, &c); err != nil {
		return err
	}
	cfg, err := loadConfig(c.config)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if !cfg.Output.AllowDisk {
		if err := sink.CheckDisk(cfg.Output.Dir); err != nil {
			// validate touches nothing; run refuses this with exit 2.
			fmt.Fprintf(stderr, "warning: %s: output.dir: %v (run refuses it)\n", cfg.Path, err)
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d secrets)\n", cfg.Path, len(cfg.Secrets))
	return nil
}

// statusView adapts the pipeline to the server's needs.
type statusView struct{ p *pipeline }

func (v statusView) Missing() []string { return v.p.engine.Missing() }
func (v statusView) BeforeScrape()     { v.p.engine.Status() }
func (v statusView) Snapshot() any {
	return map[string]any{
		"ready":   len(v.p.engine.Missing()) == 0,
		"secrets": v.p.engine.Status(),
		"reload":  v.p.reload.Status(),
	}
}

// cmdHealth asks a running sidecar's /readyz, for container healthchecks
// in images without a shell or curl: exit 0 when ready, 1 otherwise.
func cmdHealth(args []string, stdout, stderr io.Writer) error {
	var c common
	var listen string
	fs := newFlags("health", "health --config FILE [--listen ADDR]", stderr, &c, false)
	fs.StringVar(&listen, "listen", "", "the sidecar's listen address (default: listen: from the config)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if listen == "" {
		if c.config == "" {
			return usageError{errors.New("give --config FILE (or PHASE_SIDECAR_CONFIG), or --listen ADDR")}
		}
		cfg, err := config.Load(c.config)
		if err != nil {
			return usageError{err}
		}
		listen = cfg.Listen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return usageError{fmt.Errorf("listen address %q: %w", listen, err)}
	}
	// A wildcard listener is asked on loopback, in its own address family.
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(stdout, string(body))
	return nil
}
