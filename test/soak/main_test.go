// Package soak load-tests a real jitgate stack (test/soak/harness): many
// concurrent session grants, each querying PostgreSQL through its own proxy
// process, with the broker's goroutines and file descriptors counted before
// and after from its Prometheus metrics and each proxy's memory read from
// /proc. The short run is part of `make test`; the long one (build tag soak,
// scripts/soak.sh) is `make soak`. The package also holds the observability
// tests: metrics move with real operations, and every log line about a grant
// names it.
package soak

import (
	"os"
	"testing"

	"github.com/jitgate/jitgate/test/stack"
)

var bin string

func TestMain(m *testing.M) { os.Exit(stack.Main(m, "soak", &bin)) }
