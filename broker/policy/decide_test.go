package policy_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	agent = identity.Identity{IssuerName: "okta", Issuer: "https://example.okta.com/oauth2/default", Subject: "agent-1", Groups: []string{"ai-agents"}}
	dev   = identity.Identity{IssuerName: "okta", Issuer: "https://example.okta.com/oauth2/default", Subject: "dev-1", Groups: []string{"developers"}, Human: true}
)

type goldenDecision struct {
	Name     string          `json:"name"`
	Effect   string          `json:"effect"`
	Rule     string          `json:"rule"`
	Reasons  []string        `json:"reasons"`
	Access   string          `json:"access"`
	MaxTTL   string          `json:"max_ttl,omitempty"`
	Approval *goldenApproval `json:"approval,omitempty"`
}

type goldenApproval struct {
	Groups  []string `json:"groups"`
	Users   []string `json:"users"`
	Quorum  int      `json:"quorum"`
	Timeout string   `json:"timeout"`
}

func summarize(name string, d policy.Decision) goldenDecision {
	g := goldenDecision{Name: name, Effect: d.Effect.String(), Rule: d.Rule, Reasons: d.Reasons, Access: d.Access.String()}
	if a := d.Approval; a != nil {
		g.Approval = &goldenApproval{Groups: a.Groups, Users: a.Users, Quorum: a.Quorum, Timeout: a.Timeout.String()}
	}
	if d.MaxTTL != 0 {
		g.MaxTTL = d.MaxTTL.String()
	}
	return g
}

// TestExampleGolden decides a fixed set of requests against the example
// policy of the design brief and compares with testdata/example.golden.json
// (go test ./broker/policy -run Golden -update rewrites it).
func TestExampleGolden(t *testing.T) {
	t.Parallel()
	p, err := policy.Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   policy.Input
	}{
		{"agent reads orders-db (exec)", policy.Input{Identity: agent, Target: "orders-db", Mode: spec.Exec, Access: spec.Read, Operation: "SELECT 1"}},
		{"agent reads orders-db (session)", policy.Input{Identity: agent, Target: "orders-db", Mode: spec.Session, Access: spec.Read}},
		{"agent writes orders-db", policy.Input{Identity: agent, Target: "orders-db", Mode: spec.Exec, Access: spec.Write, Operation: "DELETE FROM users"}},
		{"agent writes test-db", policy.Input{Identity: agent, Target: "test-db", Mode: spec.Exec, Access: spec.Write, Operation: "UPDATE t SET x = 1"}},
		{"agent reads test-db", policy.Input{Identity: agent, Target: "test-db", Mode: spec.Exec, Access: spec.Read}},
		{"agent needs admin on test-db", policy.Input{Identity: agent, Target: "test-db", Mode: spec.Exec, Access: spec.Admin, Operation: "DROP TABLE t"}},
		{"developer reads orders-db", policy.Input{Identity: dev, Target: "orders-db", Mode: spec.Session, Access: spec.Read}},
		{"unknown target", policy.Input{Identity: agent, Target: "prod-db", Mode: spec.Exec, Access: spec.Read}},
		{"empty target name", policy.Input{Identity: agent, Target: "", Mode: spec.Exec, Access: spec.Read}},
		{"no access level", policy.Input{Identity: agent, Target: "orders-db", Mode: spec.Exec}},
		{"no mode", policy.Input{Identity: agent, Target: "orders-db", Access: spec.Read}},
		{"zero identity", policy.Input{Target: "orders-db", Mode: spec.Exec, Access: spec.Read}},
	}
	var got []goldenDecision
	for _, c := range cases {
		got = append(got, summarize(c.name, p.Decide(c.in)))
	}
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	const golden = "testdata/example.golden.json"
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("decisions differ from %s:\n%s", golden, b)
	}
}

const ghPolicy = `version: 1
issuers:
  - name: github
    issuer: https://token.actions.githubusercontent.com
    audience: api://jitgate
targets:
  - name: ci-db
    kind: postgres
    address: 127.0.0.1:5432
    database: ci
    credentials: {source: local, admin_dsn: env:CI_DSN, read_role: ci_read, write_role: ci_write}
rules:
  - name: no-pull-request-target
    effect: deny
    when: has(claims.event_name) && claims.event_name == "pull_request_target"
    targets: ["*"]
  - name: no-fork-writes
    effect: deny
    access: write
    when: >
      !has(claims.repository) || claims.repository != "org/repo"
    targets: [ci-db]
  - name: ci-main-writes
    when: |
      identity.issuer == "github" &&
      claims.repository == "org/repo" &&
      claims.ref == "refs/heads/main" &&
      claims.job_workflow_ref.startsWith("org/repo/.github/workflows/migrate.yml@")
    targets: [ci-db]
    access: write
    modes: [exec]
    max_ttl: 5m
  - name: ci-reads
    when: identity.issuer == "github" && claims.repository_owner == "org"
    targets: [ci-db]
    access: read
`

func ghIdentity(kv ...string) identity.Identity {
	claims := map[string]any{
		"repository": "org/repo", "repository_owner": "org", "ref": "refs/heads/main",
		"event_name": "push", "job_workflow_ref": "org/repo/.github/workflows/migrate.yml@refs/heads/main",
		"actor": "octocat", "run_id": "42",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(claims, kv[i])
		} else {
			claims[kv[i]] = kv[i+1]
		}
	}
	return identity.Identity{IssuerName: "github", Issuer: "https://token.actions.githubusercontent.com", Subject: "repo:org/repo:ref:refs/heads/main", Claims: claims}
}

func TestGitHubClaims(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("gh.yaml", []byte(ghPolicy))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		id         identity.Identity
		mode       spec.Mode
		access     spec.Access
		effect     policy.Effect
		rule       string
		wantReason string
	}{
		{"main push migrates", ghIdentity(), spec.Exec, spec.Write, policy.EffectAllow, "ci-main-writes", "allowed by rule ci-main-writes"},
		{"pull_request_target is denied even for reads", ghIdentity("event_name", "pull_request_target"), spec.Exec, spec.Read, policy.EffectDeny, "no-pull-request-target", "denied by rule no-pull-request-target"},
		{"fork cannot write", ghIdentity("repository", "evil/repo"), spec.Exec, spec.Write, policy.EffectDeny, "no-fork-writes", "denied by rule no-fork-writes"},
		{"fork may read (deny rule is for write)", ghIdentity("repository", "evil/repo", "repository_owner", "org"), spec.Exec, spec.Read, policy.EffectAllow, "ci-reads", "allowed by rule ci-reads"},
		{"feature branch cannot write", ghIdentity("ref", "refs/heads/feature"), spec.Exec, spec.Write, policy.EffectDeny, "", "no rule grants write on ci-db"},
		{"another workflow cannot write", ghIdentity("job_workflow_ref", "org/repo/.github/workflows/evil.yml@refs/heads/main"), spec.Exec, spec.Write, policy.EffectDeny, "", "no rule grants write on ci-db"},
		{"write in session mode is not granted", ghIdentity(), spec.Session, spec.Write, policy.EffectDeny, "", "rule ci-main-writes applies to exec mode only, request is session"},
		{"missing repository claim: deny rule fires", ghIdentity("repository", ""), spec.Exec, spec.Write, policy.EffectDeny, "no-fork-writes", "denied by rule no-fork-writes"},
		{"missing claim in an allow rule: not applied, with reason", ghIdentity("repository_owner", "", "repository", "org/other"), spec.Exec, spec.Read, policy.EffectDeny, "", "rule ci-reads not applied: condition could not be evaluated (no such key: repository_owner)"},
		{"no event_name: the has() guard keeps the deny rule quiet", ghIdentity("event_name", ""), spec.Exec, spec.Read, policy.EffectAllow, "ci-main-writes", "allowed by rule ci-main-writes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(policy.Input{Identity: c.id, Target: "ci-db", Mode: c.mode, Access: c.access})
			if d.Effect != c.effect || d.Rule != c.rule {
				t.Fatalf("decision %v, want %s by %q", d, c.effect, c.rule)
			}
			if !containsReason(d.Reasons, c.wantReason) {
				t.Errorf("reasons %q lack %q", d.Reasons, c.wantReason)
			}
			if c.effect == policy.EffectAllow && c.rule == "ci-main-writes" && d.MaxTTL != 5*time.Minute {
				t.Errorf("max ttl %s", d.MaxTTL)
			}
		})
	}
}

func containsReason(rs []string, want string) bool {
	for _, r := range rs {
		if r == want {
			return true
		}
	}
	return false
}

const semantics = `version: 1
targets:
  - {name: a, kind: postgres, address: 127.0.0.1:5432, database: a, credentials: {source: local, admin_dsn: env:X, read_role: r, write_role: w, admin_role: ad}}
  - {name: b, kind: ssh, address: 127.0.0.1:22, user: deploy, known_hosts: ["127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}
rules:
  - name: read-a
    when: '"readers" in identity.groups'
    targets: [a]
    access: read
  - name: late-deny
    effect: deny
    when: identity.subject == "mallory" || request.operation.contains("pg_read_file")
    targets: [a, b]
  - name: broken-deny
    effect: deny
    when: claims.tier == "blocked"
    targets: [b]
  - name: writers
    when: '"writers" in identity.groups && request.reason != ""'
    targets: [a]
    access: write
    max_ttl: 1h
  - name: costly
    when: claims.items.all(x, claims.items.all(y, claims.items.all(z, x + y + z >= 0)))
    targets: [a]
    access: admin
`

func TestDecideSemantics(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("sem.yaml", []byte(semantics))
	if err != nil {
		t.Fatal(err)
	}
	id := func(sub string, groups ...string) identity.Identity {
		return identity.Identity{IssuerName: "x", Subject: sub, Groups: groups, Claims: map[string]any{}}
	}
	items := make([]any, 300)
	for i := range items {
		items[i] = int64(i)
	}
	cases := []struct {
		name   string
		in     policy.Input
		effect policy.Effect
		rule   string
		reason string
	}{
		{"a deny rule later in the file still wins",
			policy.Input{Identity: id("mallory", "readers"), Target: "a", Mode: spec.Exec, Access: spec.Read},
			policy.EffectDeny, "late-deny", "denied by rule late-deny"},
		{"deny on the operation text",
			policy.Input{Identity: id("alice", "readers"), Target: "a", Mode: spec.Exec, Access: spec.Read, Operation: "SELECT pg_read_file('/etc/passwd')"},
			policy.EffectDeny, "late-deny", "denied by rule late-deny"},
		{"a deny rule that cannot be evaluated denies (fail closed)",
			policy.Input{Identity: id("alice"), Target: "b", Mode: spec.Session, Access: spec.Read},
			policy.EffectDeny, "broken-deny", "deny rule broken-deny could not be evaluated (no such key: tier); denying"},
		{"first covering rule wins; the lower one adds a reason",
			policy.Input{Identity: id("alice", "readers", "writers"), Target: "a", Mode: spec.Exec, Access: spec.Write, Reason: "fix #12"},
			policy.EffectAllow, "writers", "rule read-a grants read, request needs write"},
		{"CEL sees request.reason",
			policy.Input{Identity: id("alice", "writers"), Target: "a", Mode: spec.Exec, Access: spec.Write},
			policy.EffectDeny, "", "no rule grants write on a"},
		{"cost limit: the rule does not apply",
			policy.Input{Identity: identity.Identity{Subject: "c", Claims: map[string]any{"items": items}}, Target: "a", Mode: spec.Exec, Access: spec.Admin},
			policy.EffectDeny, "", "rule costly not applied: condition could not be evaluated (operation cancelled: actual cost limit exceeded)"},
		{"access beyond admin is refused",
			policy.Input{Identity: id("alice", "readers"), Target: "a", Mode: spec.Exec, Access: spec.Admin + 1},
			policy.EffectDeny, "", "request names no valid access level"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(c.in)
			if d.Effect != c.effect || d.Rule != c.rule || !containsReason(d.Reasons, c.reason) {
				t.Fatalf("decision %v, want %s by %q with reason %q", d, c.effect, c.rule, c.reason)
			}
			if d.Effect == policy.EffectAllow && d.Access != c.in.Access {
				t.Errorf("granted %s for a %s request", d.Access, c.in.Access)
			}
		})
	}
}

// Decide is pure: concurrent calls with the same input agree, and the input
// is not modified.
func TestDecidePure(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("gh.yaml", []byte(ghPolicy))
	if err != nil {
		t.Fatal(err)
	}
	inputs := []policy.Input{
		{Identity: ghIdentity(), Target: "ci-db", Mode: spec.Exec, Access: spec.Write},
		{Identity: ghIdentity("event_name", "pull_request_target"), Target: "ci-db", Mode: spec.Exec, Access: spec.Read},
		{Identity: ghIdentity("repository_owner", ""), Target: "ci-db", Mode: spec.Exec, Access: spec.Read},
	}
	for _, in := range inputs {
		before := fmt.Sprint(in.Identity.Claims)
		first := p.Decide(in)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					if d := p.Decide(in); !reflect.DeepEqual(d, first) {
						t.Errorf("decision changed: %v vs %v", d, first)
						return
					}
				}
			}()
		}
		wg.Wait()
		if fmt.Sprint(in.Identity.Claims) != before {
			t.Errorf("Decide modified the input claims")
		}
	}
}

// Loading is deterministic and the example's issuers map onto the verifier's config.
func TestExampleStructure(t *testing.T) {
	t.Parallel()
	p, err := policy.Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ic := p.IssuerConfigs()
	if len(ic) != 1 || ic[0].Name != "okta" || ic[0].Issuer != "https://example.okta.com/oauth2/default" || ic[0].Audience != "api://jitgate" || ic[0].GroupsClaim != "groups" || ic[0].DevOnly {
		t.Errorf("issuer configs %+v", ic)
	}
	if _, err := identity.NewVerifier(ic, identity.Options{}); err != nil {
		t.Errorf("issuer configs are not accepted by identity: %v", err)
	}
	tgt, ok := p.Target("orders-db")
	if !ok {
		t.Fatal("orders-db missing")
	}
	if st := tgt.SpecTarget(); st.Protocol != spec.Postgres || st.Address != "127.0.0.1:5432" || st.Database != "shop" {
		t.Errorf("spec target %+v", st)
	}
	if c := tgt.Credentials; c.Source != policy.SourceLocal || c.AdminDSN != "env:SHOP_ADMIN_DSN" || c.Role(spec.Read) != "shop_read" || c.Role(spec.Write) != "shop_write" || c.Role(spec.Admin) != "" {
		t.Errorf("credentials %+v", c)
	}
	m := tgt.SpecMask()
	if strings.Join(m.Columns, ",") != "public.users.password_hash,public.users.card_number,*.email" || strings.Join(m.Detectors, ",") != "credit_card,email" {
		t.Errorf("mask %+v", m)
	}
	if g := tgt.SpecGuard(spec.Read); g.Access != spec.Read {
		t.Errorf("guard %+v", g)
	}
	r := p.Rules[1]
	if r.Approval == nil || r.Approval.Quorum != 1 || r.Approval.Timeout != 15*time.Minute || strings.Join(r.Approval.Groups, ",") != "dba" {
		t.Errorf("approval %+v", r.Approval)
	}
	if !r.Approval.Eligible(identity.Identity{IssuerName: "okta", Subject: "dba-1", Groups: []string{"dba"}}) || r.Approval.Eligible(agent) {
		t.Error("Eligible does not follow the approver groups")
	}
	if p.Rules[0].MaxTTL != 10*time.Minute || p.Rules[1].MaxTTL != policy.DefaultMaxTTL {
		t.Errorf("max ttls %s %s", p.Rules[0].MaxTTL, p.Rules[1].MaxTTL)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	if _, err := policy.Load("testdata/does-not-exist.yaml"); err == nil || !strings.Contains(err.Error(), "policy: load testdata/does-not-exist.yaml") {
		t.Errorf("missing file: %v", err)
	}
	cases := []struct{ name, src, want string }{
		{"empty", "", "e.yaml:1:1: empty policy (want at least version: 1)"},
		{"comment only", "# nothing\n", "e.yaml:1:1: empty policy (want at least version: 1)"},
		{"scalar document", "hello\n", "e.yaml:1:1: policy must be a mapping, got str \"hello\""},
		{"custom tag", "version: !evil 1\n", "e.yaml:1:10: policy: version must be an integer, got !evil \"1\""},
		{"too large", strings.Repeat("#", policy.MaxFileBytes+1), fmt.Sprintf("e.yaml:1:1: policy file larger than %d bytes", policy.MaxFileBytes)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := policy.Parse("e.yaml", []byte(c.src))
			if err == nil || err.Error() != c.want {
				t.Errorf("error %v, want %s", err, c.want)
			}
		})
	}
}

// CEL positions map into the file for every scalar style.
func TestCELPositions(t *testing.T) {
	t.Parallel()
	head := "version: 1\ntargets: [{name: t, kind: http, address: '127.0.0.1:80'}]\nrules:\n  - name: r\n    targets: [t]\n    access: read\n"
	cases := []struct{ name, when, want string }{
		{"plain", "    when: identity.nope == 1\n", "c.yaml:7:19: rule \"r\": when: undefined field 'nope'"},
		{"single quoted", "    when: 'x == 1'\n", "c.yaml:7:12: rule \"r\": when: undeclared reference to 'x'"},
		{"single quoted with an escaped quote", "    when: '\"it''s\" == x'\n", "c.yaml:7:23: rule \"r\": when: undeclared reference to 'x'"},
		{"double quoted with an escape", "    when: \"\\\"a\\\" == x\"\n", "c.yaml:7:21: rule \"r\": when: undeclared reference to 'x'"},
		{"literal block", "    when: |\n      true &&\n        x\n", "c.yaml:9:9: rule \"r\": when: undeclared reference to 'x'"},
		{"folded block", "    when: >\n      true &&\n      x\n", "c.yaml:9:7: rule \"r\": when: undeclared reference to 'x'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := policy.Parse("c.yaml", []byte(head+c.when))
			if err == nil || err.Error() != c.want {
				t.Errorf("error %v\nwant  %s", err, c.want)
			}
		})
	}
}
