//go:build tools

// Package nomad only pins the Nomad version the deploy tests run; the
// binary is built with `go build github.com/hashicorp/nomad` by
// test/tools/nomad.sh.
package nomad
