// Package phase loads the catalogue of Phase Console variables that can be
// mounted from files and renders phase-sidecar configs from it, so that the
// example configs, manifests and compose file of the deploy kit all follow
// one list.
package phase

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Containers of the Phase Console, in the catalogue's order.
var Containers = []string{"backend", "worker", "frontend"}

// Catalogue is deploy/phase/catalogue.yaml.
type Catalogue struct {
	Containers map[string]Container `yaml:"containers"`
	Variables  []Variable           `yaml:"variables"`
	Plain      []Plain              `yaml:"plain"`
}

// Container says how a Phase container takes in changed files.
type Container struct {
	Description string `yaml:"description"`
	Command     string `yaml:"command"` // what the container runs
	Reload      string `yaml:"reload"`  // "reload" or "restart"
	How         string `yaml:"how"`
	Signal      string `yaml:"signal"`
	Process     string `yaml:"process"`
}

// Variable is one file-mountable variable.
type Variable struct {
	Name        string   `yaml:"name"`
	Containers  []string `yaml:"containers"`
	Kind        string   `yaml:"kind"` // "secret" or "path"
	Required    bool     `yaml:"required"`
	Example     bool     `yaml:"example"`
	Description string   `yaml:"description"`
}

// Plain is a variable a container needs that is not documented as
// mountable, so the sidecar cannot feed it.
type Plain struct {
	Name        string   `yaml:"name"`
	Containers  []string `yaml:"containers"`
	Description string   `yaml:"description"`
}

// Load reads and checks a catalogue strictly: unknown keys, unknown
// containers, duplicates and missing fields are errors.
func Load(path string) (*Catalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("phase: read catalogue: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Catalogue
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("phase: decode %s: %w", path, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("phase: %s: %w", path, err)
	}
	return &c, nil
}

func (c *Catalogue) check() error {
	for _, name := range Containers {
		ct, ok := c.Containers[name]
		if !ok {
			return fmt.Errorf("container %q missing", name)
		}
		if ct.Reload != "reload" && ct.Reload != "restart" {
			return fmt.Errorf("container %q: reload %q is neither reload nor restart", name, ct.Reload)
		}
		if ct.Signal == "" || ct.Process == "" || ct.How == "" || ct.Command == "" {
			return fmt.Errorf("container %q: command, signal, process and how are required", name)
		}
	}
	if len(c.Containers) != len(Containers) {
		return fmt.Errorf("containers: want exactly %v", Containers)
	}
	seen := map[string]bool{}
	for _, v := range c.Variables {
		switch {
		case v.Name == "" || strings.ToUpper(v.Name) != v.Name:
			return fmt.Errorf("variable %q: name must be upper case", v.Name)
		case strings.HasSuffix(v.Name, "_FILE"):
			return fmt.Errorf("variable %q: list the name without _FILE", v.Name)
		case seen[v.Name]:
			return fmt.Errorf("variable %q listed twice", v.Name)
		case v.Kind != "secret" && v.Kind != "path":
			return fmt.Errorf("variable %q: kind %q is neither secret nor path", v.Name, v.Kind)
		case v.Kind == "path" && !strings.HasSuffix(v.Name, "_PATH"):
			return fmt.Errorf("variable %q: a path variable ends in _PATH", v.Name)
		case len(v.Containers) == 0 || v.Description == "":
			return fmt.Errorf("variable %q: containers and description are required", v.Name)
		}
		for _, ct := range v.Containers {
			if !slices.Contains(Containers, ct) {
				return fmt.Errorf("variable %q: unknown container %q", v.Name, ct)
			}
		}
		seen[v.Name] = true
	}
	for _, p := range c.Plain {
		if seen[p.Name] {
			return fmt.Errorf("variable %q is both mountable and plain", p.Name)
		}
	}
	return nil
}

// Variable returns the variable called name.
func (c *Catalogue) Variable(name string) (Variable, bool) {
	i := slices.IndexFunc(c.Variables, func(v Variable) bool { return v.Name == name })
	if i < 0 {
		return Variable{}, false
	}
	return c.Variables[i], true
}

// For returns the variables that any of the containers read, in catalogue
// order.
func (c *Catalogue) For(containers ...string) []Variable {
	var out []Variable
	for _, v := range c.Variables {
		if slices.ContainsFunc(v.Containers, func(ct string) bool { return slices.Contains(containers, ct) }) {
			out = append(out, v)
		}
	}
	return out
}

// SecretName is the name of the sidecar's secrets[] entry for v: the
// variable itself for secrets (the app reads NAME_FILE), and the name
// without _PATH for paths (the app's NAME points at the written file).
func (v Variable) SecretName() string {
	if v.Kind == "path" {
		return strings.TrimSuffix(v.Name, "_PATH")
	}
	return v.Name
}

// FileName is the target file in the output directory.
func (v Variable) FileName() string {
	if v.Kind == "path" {
		return strings.ToLower(v.SecretName()) + ".pem"
	}
	return strings.ToLower(v.Name)
}
