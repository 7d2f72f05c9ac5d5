// Package stack holds the pieces every end-to-end suite uses to run a real
// jitgate stack (test/e2e, test/browser, test/action, test/faults, test/soak,
// cmd/jitgate's MCP tests): it builds the jitgate binary once per test
// binary, starts a test OIDC issuer over HTTPS that a jitgate process trusts
// through SSL_CERT_FILE, runs long-lived jitgate processes (`broker serve`,
// `dev`) in their own process group until the test ends, runs CLI commands,
// and calls the broker's HTTP API. It sits outside the request flow and
// drives it end to end: token → API → grant → credential → proxy.
//
//	var bin string
//	func TestMain(m *testing.M) { os.Exit(stack.Main(m, "e2e", &bin)) }
//
//	iss := stack.StartIssuer(t)
//	listen := stack.FreeAddr(t)
//	p := stack.StartProcess(t, stack.ProcessConfig{Bin: bin, Env: append(os.Environ(), iss.Env()...),
//		Args: []string{"broker", "serve", "--policy", path, "--listen", listen}})
//	stack.WaitHealthy(t, "http://"+listen+"/healthz", p.Exited())
//	code, body, err := stack.API("http://"+listen, iss.Token(t, "agent", "ai-agents"), "GET", "/v1/grants", nil)
package stack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles cmd/jitgate into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "jitgate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/jitgate/jitgate/cmd/jitgate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("stack: build jitgate: %w", err)
	}
	return bin, nil
}

// Main is a TestMain body: it builds jitgate into a new temporary directory,
// sets *bin to the binary, runs the tests, removes the directory and returns
// the exit code for os.Exit. suite names the temporary directory and the
// message when the build fails (which returns 1 without running a test).
func Main(m *testing.M, suite string, bin *string) int {
	dir, err := os.MkdirTemp("", "jitgate-"+suite+"-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, suite+":", err)
		return 1
	}
	return m.Run()
}
