package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/audit"
	jgcreds "github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/broker/store/dynamo"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/functions/internal/awsfixture"
	"github.com/jitgate/jitgate/test/awstest"
	"github.com/jitgate/jitgate/test/lambdatest"
	"github.com/jitgate/jitgate/test/vaulttest"
)

type noMinter struct{}

func (noMinter) Issue(context.Context, jgcreds.Request) (spec.Credential, error) {
	return spec.Credential{}, errors.New("not used")
}
func (noMinter) Revoke(context.Context, spec.Credential) error { return nil }

const policyTmpl = `version: 1
issuers:
  - name: dev
    issuer: %s
    audience: api://jitgate
    groups_claim: groups
    dev: true
targets:
  - name: orders-db
    kind: postgres
    address: 127.0.0.1:1
    database: shop
    credentials: {source: vault, vault_mount: database, vault_roles: {read: shop_read}}
rules:
  - name: agents-read-needs-dba
    when: '"ai-agents" in identity.groups'
    targets: [orders-db]
    access: read
    approval: {approvers: {groups: [dba]}, quorum: 1, timeout: 15m}
`

// TestAPIFunctionUnderTheEmulator runs the real bootstrap binary under the
// Lambda Runtime Interface Emulator with API Gateway v2 and Function URL
// payloads: grants are decided, stored in DynamoDB (moto) and approved, the
// policy comes from S3, and every invocation's audit events reach S3 as a
// hash chain that verifies.
func TestAPIFunctionUnderTheEmulator(t *testing.T) {
	t.Parallel()
	bin := lambdatest.Build(t, "./functions/api")
	moto := awstest.Start(t)
	st := awsfixture.New(t, moto)
	v := vaulttest.Start(t, vaulttest.Config{Minter: noMinter{}, Roles: map[string]spec.Access{"shop_read": spec.Read}})
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	policyURI := st.PutObject(t, "config/policy.yaml", fmt.Appendf(nil, policyTmpl, iss.URL()))
	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Name: "jitgate-api", Env: st.Env(map[string]string{
		"JITGATE_POLICY_URI": policyURI, "VAULT_ADDR": v.Addr(), "VAULT_TOKEN": v.Token,
	})})
	apigw, err := os.ReadFile("testdata/apigw-v2-request.json")
	if err != nil {
		t.Fatal(err)
	}
	furl, err := os.ReadFile("testdata/function-url-healthz.json")
	if err != nil {
		t.Fatal(err)
	}
	agent, _ := iss.Token("agent-1", []string{"ai-agents"}, "api://jitgate", nil)
	dba, _ := iss.Token("dba-1", []string{"dba"}, "api://jitgate", nil)

	// The Function URL payload, as it arrives.
	ctx := t.Context()
	out, err := fn.Invoke(ctx, furl)
	if err != nil || !strings.Contains(string(out), `"statusCode":200`) || !strings.Contains(string(out), `\"status\": \"ok\"`) {
		t.Fatalf("healthz through a Function URL event: %s, %v", out, err)
	}

	status, body := lambdatest.HTTPEvent(t, fn, apigw, "POST", "/v1/grants", "", map[string]string{"target": "orders-db", "sql": "SELECT 1"})
	if status != 401 || !strings.Contains(string(body), "missing bearer token") {
		t.Errorf("no token: %d %s", status, body)
	}
	status, body = lambdatest.HTTPEvent(t, fn, apigw, "POST", "/v1/grants", "forged."+agent[10:], map[string]string{"target": "orders-db", "sql": "SELECT 1"})
	if status != 401 {
		t.Errorf("forged token: %d %s", status, body)
	}

	status, body = lambdatest.HTTPEvent(t, fn, apigw, "POST", "/v1/grants", agent, map[string]string{"target": "orders-db", "sql": "SELECT id FROM users", "reason": "ticket 42"})
	if status != 202 {
		t.Fatalf("request: %d %s", status, body)
	}
	var g struct {
		ID, State string
	}
	if err := json.Unmarshal(body, &g); err != nil || g.State != "pending" {
		t.Fatalf("request answer %s", body)
	}
	store, err := dynamo.New(dynamo.Config{Client: st.DynamoDB, Table: st.Table})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := store.Get(ctx, g.ID)
	if err != nil || stored.State != grant.Pending || stored.Operation != "SELECT id FROM users" || stored.Reason != "ticket 42" {
		t.Fatalf("grant in DynamoDB: %+v, %v", stored, err)
	}

	status, body = lambdatest.HTTPEvent(t, fn, apigw, "POST", "/v1/grants/"+g.ID+"/approve", agent, nil)
	if status != 403 {
		t.Errorf("self-approval: %d %s", status, body)
	}
	status, body = lambdatest.HTTPEvent(t, fn, apigw, "GET", "/v1/grants?state=pending", dba, nil)
	if status != 200 || !strings.Contains(string(body), g.ID) {
		t.Errorf("approver's pending list: %d %s", status, body)
	}
	status, body = lambdatest.HTTPEvent(t, fn, apigw, "POST", "/v1/grants/"+g.ID+"/approve", dba, map[string]string{"reason": "read only"})
	if status != 200 || !strings.Contains(string(body), `"approved"`) {
		t.Fatalf("approve: %d %s", status, body)
	}
	if stored, _ = store.Get(ctx, g.ID); stored.State != grant.Approved || len(stored.Approvals) != 1 || stored.Version != 2 {
		t.Errorf("after approval in DynamoDB: %s v%d approvals %d", stored.State, stored.Version, len(stored.Approvals))
	}

	// The audit chain reached S3 and verifies.
	keys := st.Keys(t, "audit/")
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "audit/jitgate-api/") {
		t.Fatalf("audit objects %v, want one per execution environment", keys)
	}
	raw, obj := st.GetObject(t, keys[0])
	n, err := audit.Verify(bytes.NewReader(raw))
	if err != nil || n < 3 {
		t.Errorf("audit chain from S3: %d lines, %v", n, err)
	}
	if !bytes.Contains(raw, []byte(g.ID)) || !bytes.Contains(raw, []byte("grant.approved")) && !bytes.Contains(raw, []byte("approved")) {
		t.Errorf("audit chain does not record the grant's approval:\n%s", raw)
	}
	if obj.ObjectLockMode == "" || obj.ServerSideEncryption != "aws:kms" {
		t.Errorf("audit object lock %q encryption %q", obj.ObjectLockMode, obj.ServerSideEncryption)
	}
}
