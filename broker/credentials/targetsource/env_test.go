package targetsource_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials/targetsource"
)

// testEnv resolves file: references and literals, as the callers do; env:
// references are refused so tests never depend on the process environment.
func testEnv() targetsource.Env {
	return targetsource.Env{Resolve: func(ref string) (string, error) {
		switch {
		case strings.HasPrefix(ref, "file:"):
			b, err := os.ReadFile(strings.TrimPrefix(ref, "file:"))
			return strings.TrimSpace(string(b)), err
		case strings.HasPrefix(ref, "env:"), ref == "":
			return "", errors.New("not set")
		}
		return ref, nil
	}}
}

// vaultEnv is testEnv with a Vault client for addr and token.
func vaultEnv(t *testing.T, addr, token string) targetsource.Env {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	env := testEnv()
	env.Vault = func() (*vaultapi.Client, error) { return c, nil }
	return env
}
