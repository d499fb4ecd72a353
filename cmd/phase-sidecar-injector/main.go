// Command phase-sidecar-injector is the Kubernetes mutating admission
// webhook that adds phase-sidecar to annotated or policy-selected pods. It
// is a binary of its own so that client-go stays out of phase-sidecar.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/phase-sidecar/phase-sidecar/pkg/injector"
)

// DefaultImage is the sidecar image when --sidecar-image is not given.
const DefaultImage = "ghcr.io/phase-sidecar/phase-sidecar:latest"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr, nil))
}

type flags struct {
	listen, metricsListen string
	certFile, keyFile     string
	kubeconfig, config    string
	image, failurePolicy  string
	logLevel, logFormat   string
	certInterval          time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	var f flags
	fs := flag.NewFlagSet("phase-sidecar-injector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.listen, "listen", ":8443", "HTTPS address of /mutate, /healthz and /metrics")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "plain-HTTP address of /metrics and /healthz as well (e.g. :9103); empty: none")
	fs.StringVar(&f.certFile, "tls-cert-file", "", "serving certificate (PEM), reloaded when it changes")
	fs.StringVar(&f.keyFile, "tls-key-file", "", "its private key (PEM), reloaded when it changes")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: the in-cluster service account")
	fs.StringVar(&f.image, "sidecar-image", DefaultImage, "image of the injected phase-sidecar")
	fs.StringVar(&f.config, "config", "", "injector config: label policies and the sidecar's resources (YAML); empty: defaults, no policies")
	fs.StringVar(&f.failurePolicy, "failure-policy", "Fail", "Fail: refuse a pod that cannot get its sidecar; Ignore: admit it unchanged with a warning (match the webhook's failurePolicy)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json, text")
	fs.DurationVar(&f.certInterval, "tls-recheck-interval", 10*time.Second, "how often the certificate files are re-read besides file events")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: phase-sidecar-injector --tls-cert-file FILE --tls-key-file FILE [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("takes no arguments, got %q", fs.Args())
	case f.certFile == "" || f.keyFile == "":
		return nil, errors.New("--tls-cert-file and --tls-key-file are required: the API server calls webhooks over HTTPS only")
	case f.failurePolicy != "Fail" && f.failurePolicy != "Ignore":
		return nil, fmt.Errorf("--failure-policy %q: want Fail or Ignore", f.failurePolicy)
	case f.image == "":
		return nil, errors.New("--sidecar-image must not be empty")
	}
	return &f, nil
}

// run is main without the process: ready, when not nil, receives the
// webhook's address once it listens (for tests).
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- net.Addr) int {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "phase-sidecar-injector: %v\n", err)
		return 2
	}
	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "phase-sidecar-injector: %v\n", err)
		return 2
	}
	if err := serve(ctx, f, logger, ready); err != nil {
		logger.Error("exiting", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, f *flags, logger *slog.Logger, ready chan<- net.Addr) error {
	cfg, err := injector.LoadConfig(f.config)
	if err != nil {
		return err
	}
	kube, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	client, err := corev1client.NewForConfig(kube)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	inj, err := injector.New(logger, reg, injector.Options{
		Image: f.image, ConfigMaps: configMaps{client}, Config: cfg, FailOpen: f.failurePolicy == "Ignore",
	})
	if err != nil {
		return err
	}
	certs, err := injector.NewCerts(logger, reg, f.certFile, f.keyFile, f.certInterval)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(injector.Path, inj)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return certs.Run(ctx) })
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	webhook, err := listen(ctx, g, logger, "webhook", f.listen, mux, tlsCfg)
	if err != nil {
		return err
	}
	if f.metricsListen != "" {
		plain := http.NewServeMux()
		plain.Handle("/metrics", mux)
		plain.Handle("/healthz", mux)
		if _, err := listen(ctx, g, logger, "metrics", f.metricsListen, plain, nil); err != nil {
			return err
		}
	}
	logger.Info("serving", "addr", webhook.String(), "image", f.image, "policies", len(cfg.Policies), "failure_policy", f.failurePolicy)
	if ready != nil {
		ready <- webhook
	}
	return g.Wait()
}

// listen starts an HTTP(S) server on addr in g; it shuts down when ctx
// ends.
func listen(ctx context.Context, g *errgroup.Group, logger *slog.Logger, name, addr string, h http.Handler, tlsCfg *tls.Config) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %q: %w", name, addr, err)
	}
	srv := &http.Server{
		Handler: h, TLSConfig: tlsCfg,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.With("component", name).Handler(), slog.LevelWarn),
	}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	g.Go(func() error {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return l.Addr(), nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (or pass --kubeconfig): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %q: %w", kubeconfig, err)
	}
	return c, nil
}

// configMaps reads ConfigMaps through client-go for the injector.
type configMaps struct{ c corev1client.ConfigMapsGetter }

var _ injector.ConfigMaps = configMaps{}

func (c configMaps) ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error) {
	cm, err := c.c.ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("configmap %s/%s: %w", namespace, name, injector.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return cm.Data, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}
