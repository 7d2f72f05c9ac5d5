package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	jgcreds "github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/launch/ecs"
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
    issuer: http://127.0.0.1:1
    audience: api://jitgate
    dev: true
targets:
  - name: orders-db
    kind: postgres
    address: 127.0.0.1:1
    database: shop
    credentials: {source: vault, vault_mount: database, vault_roles: {read: shop_read}}
rules:
  - name: r
    when: 'true'
    targets: [orders-db]
    access: read
`

// TestSweeperFunctionUnderTheEmulator: a scheduled event expires the grants
// nobody approved in time, ends an overdue active grant and stops the ECS
// task of a grant that is no longer active, while a live grant's task keeps
// running; a non-scheduled event is refused.
func TestSweeperFunctionUnderTheEmulator(t *testing.T) {
	t.Parallel()
	bin := lambdatest.Build(t, "./functions/sweeper")
	moto := awstest.Start(t)
	st := awsfixture.New(t, moto)
	v := vaulttest.Start(t, vaulttest.Config{Minter: noMinter{}, Roles: map[string]spec.Access{"shop_read": spec.Read}})
	policyURI := st.PutObject(t, "config/policy.yaml", []byte(policyTmpl))
	ctx := t.Context()
	store, err := dynamo.New(dynamo.Config{Client: st.DynamoDB, Table: st.Table})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	mk := func(state grant.State, created time.Time) *grant.Grant {
		op := "SELECT 1"
		g := &grant.Grant{ID: grant.NewID(), Requester: "dev|agent", Target: "orders-db", Protocol: spec.Postgres, Mode: spec.Exec,
			Access: spec.Read, Operation: op, OperationHash: grant.HashOperation(op), State: state, CreatedAt: created,
			PendingUntil: created.Add(time.Minute), TTL: time.Minute}
		if err := store.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	stale := mk(grant.Pending, now.Add(-time.Hour))   // waited past PendingUntil
	fresh := mk(grant.Pending, now.Add(-time.Second)) // still within its wait
	overdue := mk(grant.Approved, now.Add(-time.Hour))
	if _, err := store.Update(ctx, overdue.ID, func(g *grant.Grant) error {
		g.ExpiresAt, g.LeaseID = now.Add(-30*time.Minute), "database/creds/shop_read/overdue"
		return g.Transition(grant.Active, now.Add(-31*time.Minute))
	}); err != nil {
		t.Fatal(err)
	}
	// Two session tasks: one for the ended grant, one for a live grant.
	live := mk(grant.Approved, now)
	if _, err := store.Update(ctx, live.ID, func(g *grant.Grant) error {
		g.ExpiresAt = now.Add(time.Hour)
		return g.Transition(grant.Active, now)
	}); err != nil {
		t.Fatal(err)
	}
	orphan := runTask(t, st, overdue.ID, now.Add(time.Hour)) // deadline tag in the future, grant no longer active
	kept := runTask(t, st, live.ID, now.Add(time.Hour))

	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Name: "jitgate-sweeper", Env: st.Env(map[string]string{
		"JITGATE_POLICY_URI": policyURI, "VAULT_ADDR": v.Addr(), "VAULT_TOKEN": v.Token,
	})})
	event, err := os.ReadFile("testdata/scheduled-event.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := fn.Invoke(ctx, event)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Expired, Ended, Revoked int
		Errors                  []string
		TasksStopped            []ecs.Orphan `json:"tasks_stopped"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report %s: %v", out, err)
	}
	if rep.Expired != 1 || rep.Ended != 1 || rep.Revoked != 1 || len(rep.Errors) != 0 {
		t.Errorf("report %s; want 1 expired, 1 ended, 1 revoked, no errors", out)
	}
	if len(rep.TasksStopped) != 1 || rep.TasksStopped[0].GrantID != overdue.ID {
		t.Errorf("tasks stopped %+v; want only %s's", rep.TasksStopped, overdue.ID)
	}
	for id, want := range map[string]grant.State{stale.ID: grant.Expired, fresh.ID: grant.Pending, overdue.ID: grant.Expired, live.ID: grant.Active} {
		if g, err := store.Get(ctx, id); err != nil || g.State != want {
			t.Errorf("grant %s: %v, %v; want %s", id, g.State, err, want)
		}
	}
	revokes := 0
	for _, c := range v.Calls() {
		if strings.HasPrefix(c.Path, "/v1/sys/leases/revoke") && c.Status == 204 {
			revokes++
		}
	}
	if revokes != 1 {
		t.Errorf("%d lease revocations reached Vault, want the overdue grant's one", revokes)
	}
	for arn, want := range map[string]string{orphan: "STOPPED", kept: "RUNNING"} {
		d, err := st.ECS.DescribeTasks(ctx, &awsecs.DescribeTasksInput{Cluster: aws.String(st.Cluster), Tasks: []string{arn}})
		if err != nil || len(d.Tasks) != 1 || aws.ToString(d.Tasks[0].LastStatus) != want {
			t.Errorf("task %s: %v; want %s", arn, err, want)
		}
	}

	// Anything but a schedule is refused.
	other, _ := os.ReadFile("testdata/s3-put-event.json")
	out, err = fn.Invoke(ctx, other)
	if err != nil || !strings.Contains(string(out), "not a scheduled event") {
		t.Errorf("S3 event: %s, %v", out, err)
	}
}

// runTask starts a session task the way launch/ecs does (startedBy, group,
// tags), without a Vault token.
func runTask(t *testing.T, st *awsfixture.Stack, grantID string, deadline time.Time) string {
	t.Helper()
	out, err := st.ECS.RunTask(t.Context(), &awsecs.RunTaskInput{
		Cluster: aws.String(st.Cluster), TaskDefinition: aws.String(st.TaskDefinition), LaunchType: ecstypes.LaunchTypeFargate,
		StartedBy: aws.String(ecs.StartedBy), Group: aws.String("jitgate:" + grantID),
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets: st.Subnets, SecurityGroups: []string{st.SecurityGroup}}},
		Tags: []ecstypes.Tag{{Key: aws.String(ecs.TagGrant), Value: aws.String(grantID)},
			{Key: aws.String(ecs.TagDeadline), Value: aws.String(deadline.Format(time.RFC3339))}},
	})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatal(fmt.Errorf("run task: %v", err))
	}
	return aws.ToString(out.Tasks[0].TaskArn)
}
