package phase

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Target describes one generated sidecar config.
type Target struct {
	Path       string   // where the generated file lives, relative to deploy/
	Title      string   // one line for the header comment
	Containers []string // the Phase containers fed by this sidecar
	Source     string   // "vault" or "aws"
	OutputDir  string
	Listen     string

	VaultAddress string
	VaultAuth    []string // YAML lines under auth:, e.g. "method: kubernetes"

	AWSRegion      string
	AWSCredentials string // "imds" or "default"

	Reload []string // YAML lines under reload:
}

// Ref returns the ref of v for the source: one Vault KV object and one
// Secrets Manager JSON secret hold all of Phase's values, so the sidecar
// fetches each once for all keys.
func Ref(source string, v Variable) string {
	switch source {
	case "vault":
		return "vault://secret/phase/console#" + strings.ToLower(v.SecretName())
	case "aws":
		return "aws-sm://phase/console#" + v.SecretName()
	}
	panic("phase: unknown source " + source)
}

// Render returns the sidecar config for t. Example variables become
// secrets[] entries; the other catalogue variables of the containers are
// listed as comments, ready to be enabled.
func (c *Catalogue) Render(t Target) []byte {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# Generated from deploy/phase/catalogue.yaml; do not edit by hand.")
	p("# Regenerate: cd deploy && go test ./phase -run TestGenerated -update")
	p("#")
	p("# %s", t.Title)
	p("output:")
	p("  dir: %s", t.OutputDir)
	p(`  mode: "0440"`)
	p("listen: %q", t.Listen)
	p("refresh: 5m")
	p("sources:")
	switch t.Source {
	case "vault":
		p("  vault:")
		p("    address: %s", t.VaultAddress)
		p("    auth:")
		for _, l := range t.VaultAuth {
			p("      %s", l)
		}
	case "aws":
		p("  aws:")
		p("    region: %s", t.AWSRegion)
		p("    credentials: %s", t.AWSCredentials)
	}
	p("secrets:")
	for _, v := range c.For(t.Containers...) {
		entry := []string{
			"- name: " + v.SecretName(),
			"  ref: " + Ref(t.Source, v),
		}
		if v.Kind == "path" {
			entry = append(entry, "  file: "+v.FileName())
		}
		if !v.Required {
			entry = append(entry, "  required: false")
		}
		use := v.Name + "_FILE"
		if v.Kind == "path" {
			use = v.Name
		}
		p("  # %s (%s: %s)", v.Description, use, t.OutputDir+"/"+v.FileName())
		for _, l := range entry {
			if v.Example {
				p("  %s", l)
			} else {
				p("  # %s", l)
			}
		}
	}
	p("reload:")
	for _, l := range t.Reload {
		p("  %s", l)
	}
	p("  coalesce: 2s")
	return []byte(b.String())
}

// SignalReload returns the reload lines that suit container ct: a signal
// to its process by name (the pod or task must share the PID namespace).
func (c *Catalogue) SignalReload(ct string) []string {
	x := c.Containers[ct]
	return []string{
		"signal:",
		"  name: " + x.Signal,
		"  process: " + yamlString(x.Process),
	}
}

// plainScalar is a string YAML reads as itself without quotes.
var plainScalar = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// yamlString quotes s unless it is a plain scalar; Go's quoting is YAML's
// double-quoted style for the ASCII the catalogue holds.
func yamlString(s string) string {
	if plainScalar.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

// Targets lists every generated config of the kit.
func (c *Catalogue) Targets() []Target {
	var ts []Target
	k8sVault := []string{"method: kubernetes", "role: phase-console"}
	for _, ct := range Containers {
		ts = append(ts,
			Target{
				Path:       "phase/configs/" + ct + "-vault.yaml",
				Title:      "Phase " + ct + " container, secrets from Vault (Kubernetes auth).",
				Containers: []string{ct}, Source: "vault", OutputDir: "/run/secrets", Listen: ":9102",
				VaultAddress: "https://vault.vault.svc:8200", VaultAuth: k8sVault,
				Reload: c.SignalReload(ct),
			},
			Target{
				Path:       "phase/configs/" + ct + "-aws.yaml",
				Title:      "Phase " + ct + " container, secrets from AWS Secrets Manager (EC2 instance role over IMDSv2).",
				Containers: []string{ct}, Source: "aws", OutputDir: "/run/secrets", Listen: ":9102",
				AWSRegion: "eu-west-1", AWSCredentials: "imds",
				Reload: c.SignalReload(ct),
			})
	}
	ts = append(ts,
		Target{
			Path:       "kubernetes/overlays/vault/phase-sidecar.yaml",
			Title:      "Kubernetes overlay vault: the backend's sidecar, Vault Kubernetes auth.",
			Containers: []string{"backend"}, Source: "vault", OutputDir: "/run/secrets", Listen: ":9102",
			VaultAddress: "https://vault.vault.svc:8200", VaultAuth: k8sVault,
			Reload: c.SignalReload("backend"),
		},
		Target{
			Path:       "kubernetes/overlays/aws/phase-sidecar.yaml",
			Title:      "Kubernetes overlay aws: the backend's sidecar, IRSA web identity via the SDK chain.",
			Containers: []string{"backend"}, Source: "aws", OutputDir: "/run/secrets", Listen: ":9102",
			AWSRegion: "eu-west-1", AWSCredentials: "default",
			Reload: c.SignalReload("backend"),
		},
		Target{
			Path:       "compose/phase-sidecar.yaml",
			Title:      "Docker Compose: one sidecar for backend, worker and frontend; Vault AppRole auth.",
			Containers: Containers, Source: "vault", OutputDir: "/run/secrets", Listen: ":9102",
			VaultAddress: "https://vault.example.internal:8200",
			VaultAuth: []string{
				"method: approle",
				"role_id_file: /etc/phase-sidecar/vault/role_id",
				"secret_id_file: /etc/phase-sidecar/vault/secret_id",
			},
			// The backend joins the sidecar's PID namespace; the worker and
			// frontend are restarted by the operator (docs/compose.md).
			Reload: c.SignalReload("backend"),
		},
	)
	return ts
}

// Markers of the container table in docs/phase.md, which TestDocs keeps
// equal to ContainerTable.
const (
	TableBegin = "<!-- containers: generated from deploy/phase/catalogue.yaml (cd deploy && go test ./phase -run TestDocs -update) -->"
	TableEnd   = "<!-- end of containers -->"
)

// ContainerTable is the Markdown table of Phase's containers: what each
// runs, the reload it gets, and what happens on first start, on a restart
// of the sidecar and on rotation.
func (c *Catalogue) ContainerTable() string {
	var b strings.Builder
	b.WriteString("| container | runs | reload | first start | sidecar restart | rotation |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, name := range Containers {
		x := c.Containers[name]
		effect := "new workers read the files"
		if x.Reload == "restart" {
			effect = "it exits and the orchestrator restarts it with the files"
		}
		// The command, and a remark after it in parentheses; a pipe would
		// end the cell, even in a code span.
		cmd, remark, _ := strings.Cut(x.Command, " (")
		if remark != "" {
			remark = " (" + remark
		}
		cell := strings.NewReplacer("|", `\|`)
		fmt.Fprintf(&b, "| %s | `%s`%s | %s to `process: %s` | ", name, cmd, remark, x.Signal, cell.Replace(yamlString(x.Process)))
		fmt.Fprintf(&b, "started after the sidecar is ready, it reads the files; nothing is sent. Already running when the files appeared (started outside the kit, or the tmpfs was lost), it read the plain-variable fallbacks: one %s (`on_initial_sync: auto`), %s | ", x.Signal, effect)
		fmt.Fprintf(&b, "files that still match: nothing is sent (`on_initial_sync: always`: one %s); a value that changed meanwhile is rewritten and %s is sent once | ", x.Signal, x.Signal)
		fmt.Fprintf(&b, "%s |\n", x.How)
	}
	return b.String()
}
