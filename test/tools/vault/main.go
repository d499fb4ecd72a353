// Command vault builds the HashiCorp Vault CLI and server from the Go module
// proxy, for the integration tests only. See test/tools/vault.sh.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
