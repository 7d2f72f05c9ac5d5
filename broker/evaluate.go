package broker

import (
	"fmt"
	"strings"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Evaluation is the pure part of a request: what the operation is, what access
// it needs, and what policy says. The broker and `jitgate policy check` share it,
// and it uses the same guard code the proxy enforces with.
type Evaluation struct {
	Access     spec.Access
	Statements []grant.StatementInfo
	Decision   policy.Decision
	// Effect is the final effect: the policy's, or deny when the statement is
	// unparseable, forbidden, or refused by the guard at its own level.
	Effect  policy.Effect
	Reasons []string
}

// Evaluate classifies the operation and decides. It does no I/O.
func Evaluate(p *policy.Policy, who identity.Identity, in RequestInput) (Evaluation, error) {
	tgt, ok := p.Target(in.Target)
	if !ok {
		return Evaluation{}, fmt.Errorf("%w: unknown target %q", ErrBadRequest, in.Target)
	}
	var ev Evaluation
	var deny []string
	switch {
	case in.Mode == spec.Exec && tgt.Protocol == spec.SSH:
		if strings.TrimSpace(in.Operation) == "" {
			return Evaluation{}, fmt.Errorf("%w: exec mode needs a command", ErrBadRequest)
		}
		// Commands run with the target's login; what may run is the target's
		// command policy, judged by the same shell guard the proxy enforces.
		ev.Access = spec.Read
		sg, err := shell.New(shell.Config{Allow: tgt.Commands.Allow, Deny: tgt.Commands.Deny})
		if err != nil {
			return Evaluation{}, fmt.Errorf("broker: shell guard for %s: %w", tgt.Name, err)
		}
		v := sg.Check(in.Operation)
		for _, c := range v.Commands {
			ev.Statements = append(ev.Statements, grant.StatementInfo{SQL: strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")), Kind: c.Name, Class: "command"})
		}
		if !v.Allowed {
			deny = append(deny, "command refused: "+v.Reason)
		}
	case in.Mode == spec.Exec && tgt.Protocol == spec.HTTP:
		// One request ("GET /v1/flags"); reads are GET/HEAD/OPTIONS. The
		// proxy judges the same operation with the same rules.
		op, err := httprule.ParseOperation(in.Operation)
		if err != nil {
			ev.Access = spec.Admin
			deny = append(deny, fmt.Sprintf("request cannot be parsed: %v", err))
			break
		}
		ev.Access = spec.Write
		switch op.Method {
		case "GET", "HEAD", "OPTIONS":
			ev.Access = spec.Read
		}
		ev.Statements = append(ev.Statements, grant.StatementInfo{SQL: op.Method + " " + op.Target, Kind: op.Method, Class: ev.Access.String()})
		hg, err := httprule.New(httprule.Config{Rules: httprule.FromSpec(tgt.HTTPRules), Access: ev.Access})
		if err != nil {
			return Evaluation{}, fmt.Errorf("broker: http rules for %s: %w", tgt.Name, err)
		}
		if v := hg.CheckOperation(op); !v.Allowed {
			deny = append(deny, "request refused: "+v.Reason)
		}
	case in.Mode == spec.Exec && tgt.Protocol == spec.Kube:
		if err := evaluateKubeExec(tgt, in.Operation, &ev, &deny); err != nil {
			return Evaluation{}, err
		}
	case tgt.Protocol == spec.Config:
		if err := evaluateConfig(&ev, &deny, tgt, in); err != nil {
			return Evaluation{}, err
		}
	case in.Mode == spec.Exec && tgt.Protocol != spec.Postgres:
		return Evaluation{}, fmt.Errorf("%w: exec mode is not available for %s targets yet", ErrBadRequest, tgt.Kind)
	case in.Mode == spec.Exec:
		if strings.TrimSpace(in.Operation) == "" {
			return Evaluation{}, fmt.Errorf("%w: exec mode needs an operation (sql)", ErrBadRequest)
		}
		ev.Access = spec.Admin
		cls, err := guard.Classify(in.Operation)
		if err != nil {
			deny = append(deny, fmt.Sprintf("statement cannot be parsed: %v", err))
			break
		}
		for _, st := range cls.Statements {
			ev.Statements = append(ev.Statements, grant.StatementInfo{SQL: st.SQL, Kind: st.Kind, Class: st.Class.String()})
			if st.Class == guard.ClassForbidden {
				deny = append(deny, fmt.Sprintf("%s is forbidden: %s", st.Kind, strings.Join(st.Reasons, "; ")))
			}
		}
		switch cls.Class {
		case guard.ClassRead:
			ev.Access = spec.Read
		case guard.ClassWrite:
			ev.Access = spec.Write
		}
		if len(deny) == 0 {
			// The statement must also pass the guard as the proxy will run it
			// (write rules such as DELETE without WHERE), at the level it needs.
			gd, err := guard.New(guard.Config{Access: ev.Access, DenyFunctions: tgt.Guard.DenyFunctions, DenyKinds: tgt.Guard.DenyKinds})
			if err != nil {
				return Evaluation{}, fmt.Errorf("broker: guard: %w", err)
			}
			if v := gd.Check(in.Operation); !v.Allowed {
				deny = append(deny, v.Reason)
			}
		}
	case in.Mode == spec.Session:
		if in.Operation != "" {
			return Evaluation{}, fmt.Errorf("%w: session mode takes no operation", ErrBadRequest)
		}
		ev.Access = in.Access
		if ev.Access == spec.AccessNone {
			ev.Access = spec.Read
		}
	default:
		return Evaluation{}, fmt.Errorf("%w: mode must be exec or session", ErrBadRequest)
	}
	ev.Decision = p.Decide(policy.Input{Identity: who, Target: tgt.Name, Mode: in.Mode, Access: ev.Access, Reason: in.Reason, Operation: in.Operation})
	ev.Effect = ev.Decision.Effect
	ev.Reasons = append(append([]string{}, ev.Decision.Reasons...), deny...)
	if len(deny) > 0 {
		ev.Effect = policy.EffectDeny
	}
	if ev.Effect == policy.EffectDeny && len(ev.Reasons) == 0 {
		ev.Reasons = []string{"denied by policy"}
	}
	return ev, nil
}
