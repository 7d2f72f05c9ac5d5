// Package policy loads a deployment's YAML policy (issuers, targets, rules
// with CEL conditions) and decides requests. It sits between identity and
// approval in the flow:
//
//	token → identity → policy → approval → grant → credentials → ...
//
// A policy file is validated completely at load time: unknown fields, bad
// durations, unknown targets in rules, duplicate names and CEL compile errors
// are all reported as "file:line:column: message". Decide is pure: it does no
// I/O, and the same Input always gives the same Decision. Whatever cannot be
// decided is denied, with a reason.
//
// Semantics of Decide, in order:
//
//  1. An unknown target, a request with no access level or no mode: deny.
//  2. Any matching rule with effect deny wins, wherever it stands in the file.
//     A deny rule whose condition cannot be evaluated also denies (fail
//     closed); guard claims that may be absent with has(), e.g.
//     has(claims.event_name) && claims.event_name == "pull_request_target".
//  3. Otherwise the first matching allow rule whose access covers the request
//     decides: allow, or approve when the rule has an approval block. A
//     matching rule granting less access than needed adds a reason ("rule X
//     grants read, request needs write"); an allow rule whose condition cannot
//     be evaluated does not match, and says why.
//  4. Nothing matched: deny "no rule grants <access> on <target>".
//
// Output masking cannot stop WHERE-clause oracles (WHERE card LIKE '4111%');
// use the target's guard settings to deny predicates on masked columns.
package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Limits and defaults.
const (
	// DefaultMaxTTL applies to allow rules that give no max_ttl.
	DefaultMaxTTL = 15 * time.Minute
	// MaxTTLLimit is the longest max_ttl a rule may give.
	MaxTTLLimit = 24 * time.Hour
	// DefaultApprovalTimeout applies to approval blocks that give no timeout.
	DefaultApprovalTimeout = 15 * time.Minute
	// MaxFileBytes bounds a policy file.
	MaxFileBytes = 4 << 20
	// CostLimit bounds the runtime cost of one CEL condition.
	CostLimit = 100_000
	// MaxExpressionBytes bounds the text of one CEL condition.
	MaxExpressionBytes = 8 << 10
)

// Policy is a loaded, validated policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	Version int
	Issuers []Issuer
	Targets []Target
	Rules   []Rule
	// Notifications are told when a grant waits for approval.
	Notifications []Notification
	// Source is the file name the policy was loaded from.
	Source string
}

// Notification is one place approvers are told about pending grants.
type Notification struct {
	// Kind is "slack" (incoming webhook) or "webhook" (JSON signed with HMAC-SHA256).
	Kind string
	// URL and Secret are references resolved by the caller: "env:NAME",
	// "file:PATH" or a literal (a literal secret in a policy file is refused).
	URL, Secret string
	// ApproveURL is the base URL of the approval page, for links in messages.
	ApproveURL string
}

// Issuer is a trusted token issuer (see identity.IssuerConfig).
type Issuer struct {
	Name, Issuer, Audience, GroupsClaim string
	Algorithms                          []string
	ClockSkew                           time.Duration
	AuthorizedParty                     string
	// HumanWhen is "claim=value": identities for which it holds are human.
	HumanWhen string
	// Dev marks the embedded dev issuer (policy key "dev: true"). DEV ONLY.
	Dev bool
}

// IssuerConfigs returns the issuers in the form identity.NewVerifier takes.
func (p *Policy) IssuerConfigs() []identity.IssuerConfig {
	out := make([]identity.IssuerConfig, 0, len(p.Issuers))
	for _, is := range p.Issuers {
		out = append(out, identity.IssuerConfig{
			Name:            is.Name,
			Issuer:          is.Issuer,
			Audience:        is.Audience,
			GroupsClaim:     is.GroupsClaim,
			Algorithms:      slices.Clone(is.Algorithms),
			ClockSkew:       is.ClockSkew,
			AuthorizedParty: is.AuthorizedParty,
			HumanWhen:       is.HumanWhen,
			DevOnly:         is.Dev,
		})
	}
	return out
}

// CredentialSource says where a target's per-grant credentials come from.
type CredentialSource int

const (
	SourceUnknown CredentialSource = iota
	// SourceLocal is the embedded minter (per-grant PostgreSQL roles, a local SSH CA).
	SourceLocal
	// SourceVault is HashiCorp Vault.
	SourceVault
)

func (s CredentialSource) String() string {
	switch s {
	case SourceLocal:
		return "local"
	case SourceVault:
		return "vault"
	}
	return "unknown"
}

// TargetCredentials configures how per-grant credentials are made.
type TargetCredentials struct {
	Source CredentialSource
	// AdminDSN is how the local minter reaches the target as an administrator:
	// "env:NAME", "file:PATH" or a literal DSN. It is NOT resolved here: the
	// caller (cmd/, functions/) resolves it, so this package reads no
	// environment and no files but the policy.
	AdminDSN string
	// ReadRole, WriteRole and AdminRole are the roles a per-grant role is made
	// a member of, by access level (local source).
	ReadRole, WriteRole, AdminRole string
	// VaultMount is the secrets engine mount (vault source).
	VaultMount string
	// VaultRoles maps an access level ("read", "write", "admin") to a Vault role.
	VaultRoles map[string]string
	// CAKey is the embedded SSH CA's private key reference ("file:PATH" or
	// "env:NAME"), resolved by the caller (ssh targets, source local).
	CAKey string
	// Token is an HTTP target's API token reference (env:NAME or file:PATH),
	// injected by the proxy (http targets, source local).
	Token string
	// KVPath and KVField name the Vault KV v2 secret holding an HTTP
	// target's token (http targets, source vault; VaultMount is the KV mount).
	KVPath, KVField string
	// Store is a config target's embedded store reference (file:PATH or
	// env:NAME holding {"<path>": {"<field>": "value"}}), source local.
	Store string
}

// Role returns the role (local) or Vault role (vault) for access a, or "".
func (c TargetCredentials) Role(a spec.Access) string {
	if c.Source == SourceVault {
		return c.VaultRoles[a.String()]
	}
	switch a {
	case spec.Read:
		return c.ReadRole
	case spec.Write:
		return c.WriteRole
	case spec.Admin:
		return c.AdminRole
	}
	return ""
}

// Masking is a target's masking configuration (spec.Mask without the key).
type Masking struct {
	// Columns are column patterns: schema.table.column, table.column or
	// column, where "*" matches one part.
	Columns []string
	// Detectors are content detector names (credit_card, email, ...).
	Detectors []string
	// JSONFields are JSON paths masked in HTTP responses.
	JSONFields []string
	// Style is "full" (default), "partial" or "token".
	Style string
}

// Guard refines the guard's defaults for a target.
type Guard struct {
	DenyFunctions, AllowFunctions []string
	DenyKinds, AllowKinds         []string
}

// Target is a resource grants are made for.
type Target struct {
	Name        string
	Description string
	// Kind is the policy spelling of Protocol ("postgres", "ssh", "http", "kube").
	Kind     string
	Protocol spec.Protocol
	// Address is host:port of the upstream.
	Address string
	// Database is the one PostgreSQL database grants are limited to.
	Database    string
	Credentials TargetCredentials
	Masking     Masking
	Guard       Guard
	// User is the login on an SSH target (the certificate's principal).
	User string
	// KnownHosts are known_hosts lines the SSH target's host key must match.
	KnownHosts []string
	// Commands is the command policy of SSH targets and of kube exec.
	Commands spec.Commands
	// HTTPRules are the method/path rules of HTTP targets.
	HTTPRules []spec.HTTPRule
	// Kube is the API server and scope of kube targets (kube.go).
	Kube KubeTarget
	// Config is the key scope of config targets (config.go).
	Config ConfigTarget
}

// SpecTarget returns the target as the proxy sees it.
func (t *Target) SpecTarget() spec.Target {
	return spec.Target{Name: t.Name, Protocol: t.Protocol, Address: t.Address, Database: t.Database,
		User: t.User, KnownHosts: slices.Clone(t.KnownHosts), CA: t.Kube.CA, ServerName: t.Kube.ServerName}
}

// SpecMask returns the target's masking settings for a grant (the caller
// adds a TokenKey for the "token" style).
func (t *Target) SpecMask() spec.Mask {
	return spec.Mask{
		Columns:    slices.Clone(t.Masking.Columns),
		Detectors:  slices.Clone(t.Masking.Detectors),
		Style:      t.Masking.Style,
		JSONFields: slices.Clone(t.Masking.JSONFields),
	}
}

// SpecGuard returns the guard settings for a grant at access level a.
func (t *Target) SpecGuard(a spec.Access) spec.Guard {
	return spec.Guard{
		Access:         a,
		DenyFunctions:  slices.Clone(t.Guard.DenyFunctions),
		AllowFunctions: slices.Clone(t.Guard.AllowFunctions),
		DenyKinds:      slices.Clone(t.Guard.DenyKinds),
		AllowKinds:     slices.Clone(t.Guard.AllowKinds),
		Commands:       t.specCommands(),
		HTTP:           slices.Clone(t.HTTPRules),
		Kube:           t.Kube.scope(),
		Config:         t.Config.SpecConfig(),
	}
}

// Approval says who must approve a grant before it becomes active.
type Approval struct {
	// Groups are group names; any member may approve.
	Groups []string
	// Users are "issuer:subject" pairs, issuer being a policy issuer name.
	Users []string
	// Quorum is how many distinct approvers are needed (>= 1).
	Quorum  int
	Timeout time.Duration
	// CoversNext lets one approval also cover the next N identical exec
	// statements (same requester, target, statement and pull request).
	CoversNext int
	// Explain asks the broker to show approvers PostgreSQL's row estimate
	// (EXPLAIN, never executed) for SQL writes.
	Explain bool
}

// Eligible reports whether approver is named by the approval block (by user
// or group). The approval step must also refuse self-approval (compare
// identity.Identity.Key) and, where it applies, non-human approvers.
func (a *Approval) Eligible(approver identity.Identity) bool {
	if slices.Contains(a.Users, approver.IssuerName+":"+approver.Subject) {
		return true
	}
	for _, g := range approver.Groups {
		if slices.Contains(a.Groups, g) {
			return true
		}
	}
	return false
}

// RuleEffect is what a rule does when it matches.
type RuleEffect int

const (
	// RuleAllow grants (or, with an approval block, offers for approval).
	RuleAllow RuleEffect = iota
	// RuleDeny refuses, whatever other rules say.
	RuleDeny
)

func (e RuleEffect) String() string {
	if e == RuleDeny {
		return "deny"
	}
	return "allow"
}

// Rule is one policy rule.
type Rule struct {
	Name        string
	Description string
	// When is the CEL condition, compiled at load time.
	When string
	// Targets are target names; "*" means every target.
	Targets []string
	// Access is the most an allow rule grants; for a deny rule, the least a
	// request must need for the rule to apply (default read: every request).
	Access spec.Access
	// MaxTTL is the longest grant an allow rule gives.
	MaxTTL time.Duration
	Effect RuleEffect
	// Modes limits the rule to exec or session grants; empty means both.
	Modes    []spec.Mode
	Approval *Approval

	prog *condition
}

func (r *Rule) namesTarget(target string) bool {
	return slices.Contains(r.Targets, target) || slices.Contains(r.Targets, "*")
}

func (r *Rule) coversMode(mode spec.Mode) bool {
	return len(r.Modes) == 0 || slices.Contains(r.Modes, mode)
}

// Target returns the named target.
func (p *Policy) Target(name string) (*Target, bool) {
	for i := range p.Targets {
		if p.Targets[i].Name == name {
			return &p.Targets[i], true
		}
	}
	return nil, false
}

// Effect is a decision's outcome. The zero value is EffectDeny.
type Effect int

const (
	EffectDeny Effect = iota
	EffectAllow
	EffectApprove
)

func (e Effect) String() string {
	switch e {
	case EffectAllow:
		return "allow"
	case EffectApprove:
		return "approve"
	}
	return "deny"
}

func (e Effect) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// Input is one request to decide.
type Input struct {
	Identity identity.Identity
	Target   string
	Mode     spec.Mode
	// Access is what the operation needs (the caller classifies SQL with the guard).
	Access spec.Access
	Reason string
	// Operation is the SQL statement or command, visible to CEL as request.operation.
	Operation string
}

// Decision is the typed outcome of Decide.
type Decision struct {
	Effect Effect
	// Rule is the deciding rule ("" when no rule matched).
	Rule string
	// Reasons explain the decision, most relevant first.
	Reasons []string
	// Target is the requested target (nil if unknown).
	Target *Target
	// Access is the access level the grant carries: what the request needs,
	// never more, even when the rule would allow more.
	Access spec.Access
	// MaxTTL is the longest grant the rule allows (allow and approve only).
	MaxTTL time.Duration
	// Approval is set when Effect is EffectApprove.
	Approval *Approval
}

func (d Decision) String() string {
	return fmt.Sprintf("%s (rule %q): %v", d.Effect, d.Rule, d.Reasons)
}
