package main

import (
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// TestAvailable runs in every tag combination (go test -tags novault,noaws
// …): a source left out of the build is refused at load, by name.
func TestAvailable(t *testing.T) {
	cfg := &config.Config{Sources: config.Sources{Vault: &config.Vault{Address: "https://vault:8200", Auth: config.VaultAuth{Method: "aws"}}}}
	if got := available(cfg, sources.File); got != "" {
		t.Errorf("file: %q", got)
	}
	for _, kind := range []string{sources.AWSSM, sources.AWSSSM} {
		if got := available(cfg, kind); got != awsBuilt {
			t.Errorf("%s: %q, want %q", kind, got, awsBuilt)
		}
	}
	got := available(cfg, sources.Vault)
	switch {
	case vaultBuilt != "":
		if got != vaultBuilt || !strings.Contains(got, "-tags novault") {
			t.Errorf("vault: %q, want %q", got, vaultBuilt)
		}
	case awsBuilt != "":
		if !strings.Contains(got, "aws auth method needs the AWS source") {
			t.Errorf("vault with aws login, no AWS source: %q", got)
		}
	case got != "":
		t.Errorf("vault: %q", got)
	}
	if awsBuilt != "" && !strings.Contains(awsBuilt, "-tags noaws") {
		t.Errorf("awsBuilt = %q", awsBuilt)
	}
}
