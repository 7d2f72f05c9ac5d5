package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Decide decides in against the policy. It is pure: no I/O, no clock, and the
// same input always gives the same decision. See the package documentation
// for the order in which rules apply.
func (p *Policy) Decide(in Input) Decision {
	d := Decision{Effect: EffectDeny, Access: in.Access}
	if p == nil {
		d.Reasons = []string{"no policy loaded"}
		return d
	}
	t, ok := p.Target(in.Target)
	if !ok {
		d.Reasons = []string{fmt.Sprintf("unknown target %q", in.Target)}
		return d
	}
	d.Target = t
	if in.Access == spec.AccessNone || in.Access > spec.Admin {
		d.Reasons = []string{"request names no valid access level"}
		return d
	}
	if in.Mode != spec.Exec && in.Mode != spec.Session {
		d.Reasons = []string{"request names no valid mode (exec or session)"}
		return d
	}
	vars := activation(in, t)

	// Deny rules first: any match wins, and so does any that cannot be evaluated.
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Effect != RuleDeny || !r.namesTarget(t.Name) || !r.coversMode(in.Mode) || in.Access < r.Access {
			continue
		}
		match, err := r.prog.eval(vars)
		if err != nil {
			d.Rule = r.Name
			d.Reasons = []string{fmt.Sprintf("deny rule %s could not be evaluated (%v); denying", r.Name, err)}
			return d
		}
		if match {
			d.Rule = r.Name
			d.Reasons = []string{fmt.Sprintf("denied by rule %s", r.Name)}
			return d
		}
	}

	var reasons []string
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Effect != RuleAllow || !r.namesTarget(t.Name) {
			continue
		}
		if !r.coversMode(in.Mode) {
			reasons = append(reasons, fmt.Sprintf("rule %s applies to %s mode only, request is %s", r.Name, modeList(r.Modes), in.Mode))
			continue
		}
		match, err := r.prog.eval(vars)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("rule %s not applied: condition could not be evaluated (%v)", r.Name, err))
			continue
		}
		if !match {
			continue
		}
		if r.Access < in.Access {
			reasons = append(reasons, fmt.Sprintf("rule %s grants %s, request needs %s", r.Name, r.Access, in.Access))
			continue
		}
		d.Rule = r.Name
		d.MaxTTL = r.MaxTTL
		if r.Approval != nil {
			d.Effect = EffectApprove
			a := *r.Approval
			a.Groups, a.Users = slices.Clone(a.Groups), slices.Clone(a.Users)
			d.Approval = &a
			d.Reasons = append([]string{fmt.Sprintf("rule %s allows %s on %s after approval", r.Name, in.Access, t.Name)}, reasons...)
		} else {
			d.Effect = EffectAllow
			d.Reasons = append([]string{fmt.Sprintf("allowed by rule %s", r.Name)}, reasons...)
		}
		return d
	}
	d.Reasons = append([]string{fmt.Sprintf("no rule grants %s on %s", in.Access, t.Name)}, reasons...)
	return d
}

func modeList(ms []spec.Mode) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return strings.Join(s, "/")
}

// activation builds the CEL variables for one request.
func activation(in Input, t *Target) map[string]any {
	claims := in.Identity.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	groups := in.Identity.Groups
	if groups == nil {
		groups = []string{}
	}
	return map[string]any{
		"identity": celIdentity{
			Issuer:    in.Identity.IssuerName,
			IssuerURL: in.Identity.Issuer,
			Subject:   in.Identity.Subject,
			Groups:    groups,
			Human:     in.Identity.Human,
			Dev:       in.Identity.DevOnly,
		},
		"claims":  claims,
		"target":  celTarget{Name: t.Name, Kind: t.Kind, Database: t.Database},
		"request": celRequest{Mode: in.Mode.String(), Access: in.Access.String(), Reason: in.Reason, Operation: in.Operation},
	}
}
