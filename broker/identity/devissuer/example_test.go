package devissuer_test

import (
	"context"
	"fmt"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

// Start runs the DEV ONLY issuer on a loopback port until stop is called; a
// Verifier configured with DevOnly trusts it like any OIDC issuer.
func ExampleStart() {
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		panic(err)
	}
	defer stop()

	v, err := identity.NewVerifier([]identity.IssuerConfig{{
		Name: "dev", Issuer: iss.URL(), Audience: "api://jitgate", DevOnly: true,
	}}, identity.Options{})
	if err != nil {
		panic(err)
	}
	tok, err := iss.Token("agent-1", []string{"ai-agents"}, "api://jitgate", map[string]any{"repository": "org/repo"})
	if err != nil {
		panic(err)
	}
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		panic(err)
	}
	fmt.Println(id, id.Groups, id.Claims["repository"])
	// Output: dev:agent-1 (DEV ONLY) [ai-agents] org/repo
}
