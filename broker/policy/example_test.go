package policy_test

import (
	"testing"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TestGitHubActionsExample loads the shipped GitHub Actions policy and checks
// what it says for PR jobs, other repositories and pull_request_target.
func TestGitHubActionsExample(t *testing.T) {
	p, err := policy.Load("../../examples/github-actions-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gh := func(repo, event string) identity.Identity {
		return identity.Identity{IssuerName: "github", Issuer: "https://token.actions.githubusercontent.com",
			Subject: "repo:" + repo + ":pull_request", Claims: map[string]any{
				"repository": repo, "repository_owner": "acme", "event_name": event, "ref": "refs/pull/42/merge",
				"sha": "0123abc", "actor": "octocat", "run_id": "99", "job_workflow_ref": repo + "/.github/workflows/ci.yml@refs/pull/42/merge"}}
	}
	cases := []struct {
		name   string
		who    identity.Identity
		target string
		access spec.Access
		want   policy.Effect
		rule   string
	}{
		{"own PR reads staging", gh("acme/shop", "pull_request"), "staging-db", spec.Read, policy.EffectAllow, "pr-reads-staging"},
		{"own PR cannot write staging", gh("acme/shop", "pull_request"), "staging-db", spec.Write, policy.EffectDeny, ""},
		{"own PR writes test db after approval", gh("acme/shop", "pull_request"), "pr-test-db", spec.Write, policy.EffectApprove, "pr-writes-test-db"},
		{"another repository reads nothing", gh("evil/fork", "pull_request"), "staging-db", spec.Read, policy.EffectDeny, ""},
		{"pull_request_target refused", gh("acme/shop", "pull_request_target"), "staging-db", spec.Read, policy.EffectDeny, "no-pull-request-target"},
		{"push events are not PR jobs", gh("acme/shop", "push"), "staging-db", spec.Read, policy.EffectDeny, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(policy.Input{Identity: tc.who, Target: tc.target, Mode: spec.Exec, Access: tc.access, Operation: "SELECT 1"})
			if d.Effect != tc.want || (tc.rule != "" && d.Rule != tc.rule) {
				t.Fatalf("effect %s rule %q (reasons %v); want %s rule %q", d.Effect, d.Rule, d.Reasons, tc.want, tc.rule)
			}
		})
	}
}
