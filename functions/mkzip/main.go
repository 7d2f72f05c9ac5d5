// Command mkzip builds the Lambda deployment packages: bin/functions/<name>.zip
// for api, runner and sweeper, each holding one "bootstrap" for the
// provided.al2023 runtime (see functions/internal/zipbuild for the glibc
// floor). It prints one line per zip with Terraform's source_code_hash.
//
//	go run ./functions/mkzip -out bin/functions
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/jitgate/jitgate/functions/internal/zipbuild"
)

func main() {
	out := flag.String("out", "bin/functions", "directory the zips are written to")
	arch := flag.String("arch", "amd64", "GOARCH of the functions (must match this machine: cgo)")
	only := flag.String("functions", strings.Join(zipbuild.Functions, ","), "comma-separated functions to build")
	flag.Parse()
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	arts, err := zipbuild.Build(context.Background(), zipbuild.Config{ModuleRoot: root, Out: *out, Arch: *arch, Functions: strings.Split(*only, ",")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, a := range arts {
		fmt.Printf("%-8s %s  %6.1f MiB  glibc>=%s  source_code_hash=%s\n", a.Function, a.Zip, float64(a.Size)/(1<<20), a.Glibc, a.SHA256)
	}
}
