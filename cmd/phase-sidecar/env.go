package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
)

// envFormats are env's outputs: what the app's environment is comes from
// config (AppEnv); how a manifest spells it is the command line's.
var envFormats = map[string]struct {
	header, comment string
	line            func(name, path string) string
}{
	"shell": {"", "# ", func(n, p string) string { return n + "=" + shellQuote(p) }},
	"k8s": {"env:", "  # ", func(n, p string) string {
		return "  - name: " + n + "\n    value: " + yamlQuote(config.EscapeDollars(p))
	}},
	"compose": {"environment:", "  # ", func(n, p string) string { return "  " + n + ": " + yamlQuote(config.EscapeDollars(p)) }},
}

func cmdEnv(args []string, stdout, stderr io.Writer) error {
	var c common
	var format string
	fs := newFlags("env", "env --config FILE [--format shell|k8s|compose]", stderr, &c, false)
	fs.StringVar(&format, "format", "shell", "output format: shell (NAME_FILE=path lines), k8s (env: list), compose (environment: map)")
	if err := parse(fs, args, &c); err != nil {
		return err
	}
	cfg, err := config.Load(c.config)
	if err != nil {
		return usageError{err}
	}
	f, ok := envFormats[format]
	if !ok {
		return usageError{fmt.Errorf("--format %q: want shell, k8s or compose", format)}
	}
	if f.header != "" {
		fmt.Fprintln(stdout, f.header)
	}
	for _, v := range cfg.AppEnv() {
		if v.Note != "" {
			fmt.Fprintln(stdout, f.comment+v.Note)
		} else {
			fmt.Fprintln(stdout, f.line(v.Name, v.Path))
		}
	}
	return nil
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func yamlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
