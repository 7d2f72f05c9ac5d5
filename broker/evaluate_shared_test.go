package broker_test

import (
	"errors"
	"testing"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// The evaluate_*_test.go files judge one target kind each, as agent-1 in
// group ai-agents from the okta issuer their policies trust.

// parsePolicy parses policy text or fails the test.
func parsePolicy(t *testing.T, name, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(name, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// evaluateExec evaluates an exec request for op on target as agent-1.
func evaluateExec(p *policy.Policy, target, op string) (broker.Evaluation, error) {
	who := identity.Identity{IssuerName: "okta", Subject: "agent-1", Groups: []string{"ai-agents"}}
	return broker.Evaluate(p, who, broker.RequestInput{Target: target, Mode: spec.Exec, Operation: op})
}

// wantBadRequest checks that a request is refused as a bad request
// (HTTP 400), never judged.
func wantBadRequest(t *testing.T, p *policy.Policy, in broker.RequestInput) {
	t.Helper()
	who := identity.Identity{IssuerName: "okta", Subject: "agent-1", Groups: []string{"ai-agents"}}
	if _, err := broker.Evaluate(p, who, in); !errors.Is(err, broker.ErrBadRequest) {
		t.Errorf("%+v: err = %v, want ErrBadRequest", in, err)
	}
}
