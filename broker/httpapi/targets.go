package httpapi

import (
	"net/http"
	"strings"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TargetView is one target the caller may ask for, with the levels policy
// would grant (allow) or offer for approval (approve). Denied levels are left out.
type TargetView struct {
	Name        string       `json:"name"`
	Kind        string       `json:"kind"`
	Description string       `json:"description,omitempty"`
	Database    string       `json:"database,omitempty"`
	Tool        string       `json:"tool"`
	Access      []AccessView `json:"access"`
}

// AccessView is what policy says for one access level.
type AccessView struct {
	Level     string   `json:"level"`
	Effect    string   `json:"effect"`
	Rule      string   `json:"rule"`
	MaxTTL    string   `json:"max_ttl,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	Quorum    int      `json:"quorum,omitempty"`
}

var toolFor = map[spec.Protocol]string{spec.Postgres: "sql_query", spec.SSH: "ssh_exec", spec.HTTP: "http_request", spec.Kube: "kubectl_exec", spec.Config: "read_config"}

// targets answers GET /v1/targets from the policy, for the caller's identity.
func (a *api) targets(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	p := a.cfg.Service.Policy()
	out := []TargetView{}
	for i := range p.Targets {
		t := &p.Targets[i]
		v := TargetView{Name: t.Name, Kind: t.Kind, Description: t.Description, Database: t.Database, Tool: toolFor[t.Protocol]}
		for _, lvl := range []spec.Access{spec.Read, spec.Write, spec.Admin} {
			d := p.Decide(policy.Input{Identity: who, Target: t.Name, Mode: spec.Exec, Access: lvl})
			if d.Effect == policy.EffectDeny {
				continue
			}
			av := AccessView{Level: lvl.String(), Effect: d.Effect.String(), Rule: d.Rule}
			if d.MaxTTL > 0 {
				av.MaxTTL = d.MaxTTL.String()
			}
			if d.Approval != nil {
				av.Approvers = append(append([]string{}, d.Approval.Groups...), d.Approval.Users...)
				av.Quorum = d.Approval.Quorum
			}
			v.Access = append(v.Access, av)
		}
		if len(v.Access) > 0 {
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"identity": map[string]any{"issuer": strings.TrimSpace(who.IssuerName), "subject": who.Subject, "groups": who.Groups},
		"targets":  out,
	})
}
