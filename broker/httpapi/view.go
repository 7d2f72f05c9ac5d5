package httpapi

import (
	"time"

	"github.com/jitgate/jitgate/broker/grant"
)

// GrantView is a grant as the API shows it: never the secret hash.
type GrantView struct {
	ID            string                `json:"id"`
	State         string                `json:"state"`
	Requester     string                `json:"requester"`
	RequesterName string                `json:"requester_name,omitempty"`
	Target        string                `json:"target"`
	Mode          string                `json:"mode"`
	Access        string                `json:"access"`
	Operation     string                `json:"operation,omitempty"`
	OperationHash string                `json:"operation_hash,omitempty"`
	Statements    []grant.StatementInfo `json:"statements,omitempty"`
	Reason        string                `json:"reason,omitempty"`
	Claims        map[string]any        `json:"claims,omitempty"`
	Rule          string                `json:"rule,omitempty"`
	Reasons       []string              `json:"reasons,omitempty"`
	Effect        string                `json:"effect,omitempty"`
	Approvers     []string              `json:"approver_groups,omitempty"`
	ApproverUsers []string              `json:"approver_users,omitempty"`
	Quorum        int                   `json:"quorum,omitempty"`
	Approvals     []grant.Approval      `json:"approvals,omitempty"`
	CoveredBy     string                `json:"covered_by,omitempty"`
	CoversNext    int                   `json:"covers_next,omitempty"`
	EstimatedRows *float64              `json:"estimated_rows,omitempty"`
	CreatedAt     time.Time             `json:"created_at"`
	PendingUntil  *time.Time            `json:"pending_until,omitempty"`
	TTL           string                `json:"ttl,omitempty"`
	ExpiresAt     *time.Time            `json:"expires_at,omitempty"`
	LeaseID       string                `json:"lease_id,omitempty"`
	Revoked       bool                  `json:"credential_revoked,omitempty"`
	RevokeError   string                `json:"revoke_error,omitempty"`
	ProxyAddr     string                `json:"proxy_addr,omitempty"`
	Recording     string                `json:"recording,omitempty"`
	Error         string                `json:"error,omitempty"`
}

// View converts a grant for the API.
func View(g *grant.Grant) GrantView {
	v := GrantView{
		ID: g.ID, State: g.State.String(), Requester: g.Requester, RequesterName: g.RequesterName, Target: g.Target,
		Mode: g.Mode.String(), Access: g.Access.String(), Operation: g.Operation, OperationHash: g.OperationHash,
		Statements: g.Statements, Reason: g.Reason, Claims: g.Claims, Rule: g.Rule, Reasons: g.Reasons, Effect: g.Effect,
		Approvers: g.ApproversGroups, ApproverUsers: g.ApproversUsers, Quorum: g.Quorum, Approvals: g.Approvals,
		CreatedAt: g.CreatedAt, LeaseID: g.LeaseID, Revoked: g.CredentialRevoked, RevokeError: g.RevokeError,
		ProxyAddr: g.ProxyAddr, Recording: g.RecordingPath, Error: g.Error,
	}
	v.CoveredBy, v.CoversNext = g.CoveredBy, g.CoversNext
	if g.EstimatedRows != 0 {
		n := g.EstimatedRows
		v.EstimatedRows = &n
	}
	if g.TTL > 0 {
		v.TTL = g.TTL.String()
	}
	if !g.PendingUntil.IsZero() {
		t := g.PendingUntil
		v.PendingUntil = &t
	}
	if !g.ExpiresAt.IsZero() {
		t := g.ExpiresAt
		v.ExpiresAt = &t
	}
	return v
}
