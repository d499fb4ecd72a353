// Package sdkpartitions reads the AWS partitions file of the aws-sdk-go-v2
// module this build uses, for tests that hold the project's region and
// endpoint rules to the SDK's. Only tests import it.
package sdkpartitions

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Partition is one entry of the SDK's partitions.json.
type Partition struct {
	ID          string
	RegionRegex string
	Regions     map[string]json.RawMessage // region → its overrides, if any
	Outputs     struct {
		DNSSuffix          string `json:"dnsSuffix"`
		DualStackDNSSuffix string `json:"dualStackDnsSuffix"`
		SupportsFIPS       bool   `json:"supportsFIPS"`
		SupportsDualStack  bool   `json:"supportsDualStack"`
	}
}

// Read returns the partitions of internal/endpoints/awsrulesfn/partitions.json
// (which the SDK's endpoint rules embed), found through the go command.
func Read(t testing.TB) []Partition {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-sdk-go-v2").Output()
	if err != nil {
		t.Fatalf("go list the SDK module: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal", "endpoints", "awsrulesfn", "partitions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Partitions []Partition }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Partitions
}

// Regions lists every region of every partition.
func Regions(t testing.TB) []string {
	var regions []string
	for _, p := range Read(t) {
		for r := range p.Regions {
			regions = append(regions, r)
		}
	}
	return regions
}
