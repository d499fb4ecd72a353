// Command phase-sidecar delivers secrets from Vault, AWS or mounted files
// into a tmpfs directory as files an app reads through NAME_FILE variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// Set with -ldflags "-X main.version=… -X main.revision=…".
var (
	version  = ""
	revision = ""
)

// Exit codes of the external contract.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// usageError marks errors that exit 2: bad config or bad usage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const topUsage = `phase-sidecar delivers secrets into files an app reads through NAME_FILE.

Usage:
  phase-sidecar run      --config FILE [--listen ADDR] [--log-level L] [--log-format F] [-- APP ARGS…]
  phase-sidecar once     --config FILE      sync everything once; exit 1 if a required secret failed
  phase-sidecar validate --config FILE      check a config offline
  phase-sidecar env      --config FILE [--format shell|k8s|compose]
  phase-sidecar health   --config FILE [--listen ADDR]   exit 0 when a running sidecar is ready
  phase-sidecar version

--config defaults to $PHASE_SIDECAR_CONFIG. Exit codes: 0 ok, 1 runtime failure,
2 bad config or usage. "phase-sidecar COMMAND --help" describes each command.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(rest, stdout, stderr)
	case "once":
		err = cmdOnce(rest, stdout, stderr)
	case "validate":
		err = cmdValidate(rest, stdout, stderr)
	case "env":
		err = cmdEnv(rest, stdout, stderr)
	case "health":
		err = cmdHealth(rest, stdout, stderr)
	case "version", "--version", "-version":
		err = cmdVersion(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, topUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "phase-sidecar: unknown command %q\n\n%s", cmd, topUsage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(exitCode)):
		var code exitCode
		errors.As(err, &code)
		return int(code)
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "phase-sidecar %s: %v\n", cmd, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "phase-sidecar %s: %v\n", cmd, err)
		return exitRuntime
	}
}

// cmdVersion prints the version line; it takes no arguments but --help.
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: phase-sidecar version\n\nPrints the version, the commit and the Go version it was built with.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("takes no arguments, got %q", fs.Args())}
	}
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// common holds the flags every command that loads a config shares.
type common struct {
	config    string
	logLevel  string
	logFormat string
}

func newFlags(name, synopsis string, stderr io.Writer, c *common, withLog bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.config, "config", os.Getenv("PHASE_SIDECAR_CONFIG"), "config file (default $PHASE_SIDECAR_CONFIG)")
	if withLog {
		fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
		fs.StringVar(&c.logFormat, "log-format", "json", "log format: json, text")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: phase-sidecar %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string, c *common) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if c.config == "" {
		return usageError{errors.New("--config FILE is required (or set PHASE_SIDECAR_CONFIG)")}
	}
	return nil
}

// newLogger builds the process logger; secrets never reach it as values.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want json or text", format)}
}

// signalContext ends on SIGTERM or SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func buildVersion() (string, string) {
	v, r := version, revision
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && r == "" {
				r = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if r == "" {
		r = "unknown"
	}
	return v, r
}

func versionLine() string {
	v, r := buildVersion()
	return fmt.Sprintf("phase-sidecar %s (revision %s, %s, %s/%s)", v, r, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
