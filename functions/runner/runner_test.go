package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	jgcreds "github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	launchlambda "github.com/jitgate/jitgate/broker/launch/lambda"
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

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func storedGrant() *grant.Grant {
	op := "SELECT name FROM users"
	return &grant.Grant{ID: "g_runnercheck", Requester: "dev|agent", Target: "orders-db", Protocol: spec.Postgres, Mode: spec.Exec,
		Access: spec.Read, Operation: op, OperationHash: grant.HashOperation(op), State: grant.Active,
		CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Minute)}
}

func specFor(g *grant.Grant) *spec.Grant {
	return &spec.Grant{ID: g.ID, Mode: g.Mode, Identity: g.Requester, Operation: g.Operation,
		Target: spec.Target{Name: g.Target, Protocol: g.Protocol, Address: "db:5432"}, Deadline: g.ExpiresAt,
		Guard: spec.Guard{Access: g.Access}, Record: spec.Record{Dir: "/tmp/x"}}
}

// TestCheckGrant: the unwrapped spec must match the grant the broker
// activated; anything else is a security event, not an inconvenience.
func TestCheckGrant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(st *grant.Grant, g *spec.Grant)
		mode spec.Mode
		want string
	}{
		{"ok", func(*grant.Grant, *spec.Grant) {}, spec.Exec, ""},
		{"pending", func(st *grant.Grant, _ *spec.Grant) { st.State = grant.Pending }, spec.Exec, "grant is pending, not active"},
		{"ended", func(st *grant.Grant, _ *spec.Grant) { st.State = grant.Ended }, spec.Exec, "grant is ended, not active"},
		{"operation swapped", func(_ *grant.Grant, g *spec.Grant) { g.Operation = "DELETE FROM users" }, spec.Exec, "not the approved operation"},
		{"access raised", func(_ *grant.Grant, g *spec.Grant) { g.Guard.Access = spec.Admin }, spec.Exec, "spec access admin is not the granted read"},
		{"other identity", func(_ *grant.Grant, g *spec.Grant) { g.Identity = "dev|mallory" }, spec.Exec, "is not the requester"},
		{"other target", func(_ *grant.Grant, g *spec.Grant) { g.Target.Name = "prod-db" }, spec.Exec, "is not the grant's target"},
		{"session runner", func(*grant.Grant, *spec.Grant) {}, spec.Session, "this runner serves session grants"},
		{"deadline stretched", func(_ *grant.Grant, g *spec.Grant) { g.Deadline = g.Deadline.Add(time.Hour) }, spec.Exec, "is after the grant's expiry"},
		{"expired", func(st *grant.Grant, g *spec.Grant) { g.Deadline = now; st.ExpiresAt = now }, spec.Exec, "has passed"},
		{"other id", func(_ *grant.Grant, g *spec.Grant) { g.ID = "g_other" }, spec.Exec, `spec names grant "g_other"`},
	}
	for _, tc := range tests {
		st := storedGrant()
		g := specFor(st)
		tc.mod(st, g)
		err := checkGrant(st, g, tc.mode, now)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestRunnerRefusesUnderTheEmulator: the runner binary, invoked as Lambda
// invokes it, refuses a token that is not a wrapping token, a token that was
// already spent, and a spec whose grant is not active — before anything
// connects anywhere — and answers with statuses, never a crash.
func TestRunnerRefusesUnderTheEmulator(t *testing.T) {
	t.Parallel()
	bin := lambdatest.Build(t, "./functions/runner")
	moto := awstest.Start(t)
	st := awsfixture.New(t, moto)
	v := vaulttest.Start(t, vaulttest.Config{Minter: noMinter{}, Roles: map[string]spec.Access{"r": spec.Read}})
	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Name: "jitgate-runner", Env: st.Env(map[string]string{"VAULT_ADDR": v.Addr()})})
	ctx := t.Context()
	store, err := dynamo.New(dynamo.Config{Client: st.DynamoDB, Table: st.Table})
	if err != nil {
		t.Fatal(err)
	}
	pending := storedGrant()
	pending.ID, pending.State, pending.ExpiresAt = grant.NewID(), grant.Pending, time.Time{}
	pending.CreatedAt = time.Now().UTC()
	if err := store.Create(ctx, pending); err != nil {
		t.Fatal(err)
	}
	g := specFor(pending)
	g.Deadline = time.Now().Add(time.Minute)
	wrap := func() string {
		tok, err := launchlambda.VaultWrapper{Client: v.Client()}.WrapGrant(ctx, g, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	template, err := os.ReadFile("testdata/invocation.json")
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(id, token string) launchlambda.Response {
		var inv launchlambda.Invocation
		_ = json.Unmarshal(template, &inv)
		inv.GrantID, inv.WrapToken = id, token
		b, _ := json.Marshal(inv)
		out, err := fn.Invoke(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		var resp launchlambda.Response
		if err := json.Unmarshal(out, &resp); err != nil || len(resp.Statuses) != 2 {
			t.Fatalf("answer %s: %v", out, err)
		}
		return resp
	}
	spent := wrap()
	if _, err := launchlambda.UnwrapGrant(ctx, v.Client(), spent, g.ID); err != nil { // an eavesdropper got there first
		t.Fatal(err)
	}
	tests := []struct {
		name, id, token, want string
	}{
		{"not a token", pending.ID, "hvs.not-a-wrapping-token", "security event"},
		{"spent token", pending.ID, spent, "someone else unwrapped it"},
		{"grant not active", pending.ID, wrap(), "grant is pending, not active"},
		{"token for another grant", grant.NewID(), wrap(), "wraps the spec of grant"},
		{"bad id", "../../etc", "x", "invalid grant id"},
	}
	for _, tc := range tests {
		resp := invoke(tc.id, tc.token)
		first, last := resp.Statuses[0], resp.Statuses[1]
		if first.Type != spec.StatusError || first.Code != spec.CodeBadSpec || !strings.Contains(first.Error, tc.want) || last.Type != spec.StatusExit {
			t.Errorf("%s: %+v; want a bad_spec error mentioning %q, then exit", tc.name, resp.Statuses, tc.want)
		}
		if strings.Contains(first.Error, tc.token) && len(tc.token) > 2 {
			t.Errorf("%s: the answer repeats the token", tc.name)
		}
	}
}

// TestRunnerOutsideLambda: as an ECS task, the runner takes its grant from
// the two task variables and refuses a bad token with a non-zero exit;
// with neither Lambda nor task variables it does nothing.
func TestRunnerOutsideLambda(t *testing.T) {
	t.Parallel()
	bin := lambdatest.Build(t, "./functions/runner")
	moto := awstest.Start(t)
	st := awsfixture.New(t, moto)
	v := vaulttest.Start(t, vaulttest.Config{Minter: noMinter{}, Roles: map[string]spec.Access{"r": spec.Read}})
	base := st.Env(map[string]string{"VAULT_ADDR": v.Addr()})

	cmd := exec.Command(bin)
	cmd.Env = append(base, "JITGATE_GRANT_ID=g_ecs", "JITGATE_WRAP_TOKEN=hvs.stolen-or-garbage")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "security event") {
		t.Errorf("ECS task with a bad token: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "hvs.stolen-or-garbage") {
		t.Error("the task printed its wrapping token")
	}
	cmd = exec.Command(bin)
	cmd.Env = base
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "nothing to run") {
		t.Errorf("no Lambda, no task: %v\n%s", err, out)
	}
}
