// The test bed's private registry: distribution's `registry serve CONFIG` with the filesystem storage driver
// and htpasswd auth only (the upstream command links every cloud driver, a much larger module download).
// `registry htpasswd USER` reads a password on stdin and prints an htpasswd line (bcrypt, which is the only
// hash the registry accepts).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"golang.org/x/crypto/bcrypt"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "htpasswd" {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(os.Stderr, "registry htpasswd: no password on stdin")
			os.Exit(2)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(strings.TrimRight(line, "\r\n")), bcrypt.DefaultCost)
		if err != nil {
			fmt.Fprintln(os.Stderr, "registry htpasswd:", err)
			os.Exit(1)
		}
		fmt.Printf("%s:%s\n", os.Args[2], hash)
		return
	}
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
