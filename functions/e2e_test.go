// The AWS-mode end-to-end test: the three function binaries under the Lambda
// Runtime Interface Emulator, AWS APIs from moto (or from LocalStack, or the
// moto that localstack/up.sh started, when JITGATE_E2E_AWS_ENDPOINT names
// it), Vault's API from test/vaulttest backed by real PostgreSQL roles, and
// the shop database in a real PostgreSQL.
package functions_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/broker/launch/ecs"
	launchlambda "github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/broker/store/dynamo"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/functions/internal/awsfixture"
	"github.com/jitgate/jitgate/test/awstest"
	"github.com/jitgate/jitgate/test/lambdatest"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/vaulttest"
)

const policyTmpl = `version: 1
issuers:
  - name: dev
    issuer: %[1]s
    audience: api://jitgate
    groups_claim: groups
    dev: true
targets:
  - name: orders-db
    kind: postgres
    address: %[2]s
    database: shop
    credentials: {source: vault, vault_mount: database, vault_roles: {read: shop_read, write: shop_write}}
    masking:
      columns: ["public.users.password_hash", "public.users.card_number", "*.email"]
      detectors: [credit_card, email]
rules:
  - name: agents-exec-needs-dba
    when: '"ai-agents" in identity.groups'
    targets: [orders-db]
    modes: [exec]
    access: read
    approval: {approvers: {groups: [dba]}, quorum: 1, timeout: 15m}
  - name: agents-read-sessions
    when: '"ai-agents" in identity.groups'
    targets: [orders-db]
    modes: [session]
    access: read
    max_ttl: 10m
`

// awsEndpoint is moto started for this test, or the endpoint named by
// JITGATE_E2E_AWS_ENDPOINT (make localstack-e2e).
func awsEndpoint(t *testing.T) (*awstest.Server, bool) {
	if ep := os.Getenv("JITGATE_E2E_AWS_ENDPOINT"); ep != "" {
		t.Logf("using the AWS endpoint at %s", ep)
		return awstest.Attach(ep), false
	}
	return awstest.Start(t), true
}

func TestAWSEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	bins := map[string]string{}
	for _, f := range []string{"api", "runner", "sweeper"} {
		bins[f] = lambdatest.Build(t, "./functions/"+f)
	}
	moto, isMoto := awsEndpoint(t)
	st := awsfixture.New(t, moto)

	pg := pgtest.Start(t)
	if err := shopdb.Setup(ctx, pg); err != nil {
		t.Fatal(err)
	}
	minter, err := local.NewPostgres(local.PostgresConfig{AdminDSN: pg.AdminDSN("shop"), Database: "shop",
		Roles: map[spec.Access]string{spec.Read: "shop_read", spec.Write: "shop_write"}})
	if err != nil {
		t.Fatal(err)
	}
	v := vaulttest.Start(t, vaulttest.Config{Minter: minter, Roles: map[string]spec.Access{"shop_read": spec.Read, "shop_write": spec.Write}})
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	agent, _ := iss.Token("agent-7", []string{"ai-agents"}, "api://jitgate", nil)
	dba, _ := iss.Token("dba-1", []string{"dba"}, "api://jitgate", nil)
	policyURI := st.PutObject(t, "config/policy.yaml", fmt.Appendf(nil, policyTmpl, iss.URL(), pg.Addr()))
	maskKeyURI := st.PutObject(t, "config/mask.key", bytes.Repeat([]byte("k"), 32))

	// The runner gets VAULT_ADDR only: unwrapping needs no Vault token.
	runner := lambdatest.Start(t, lambdatest.Config{Binary: bins["runner"], Name: "jitgate-runner",
		Env: st.Env(map[string]string{"VAULT_ADDR": v.Addr()})})
	brokerEnv := map[string]string{
		"JITGATE_POLICY_URI": policyURI, "JITGATE_MASK_KEY_URI": maskKeyURI,
		"VAULT_ADDR": v.Addr(), "VAULT_TOKEN": v.Token,
		"JITGATE_RUNNER_FUNCTION": lambdatest.FunctionName, "AWS_ENDPOINT_URL_LAMBDA": runner.URL,
		"JITGATE_ECS_STOP_GRACE": "1s", "JITGATE_ECS_POLL": "250ms",
	}
	api := lambdatest.Start(t, lambdatest.Config{Binary: bins["api"], Name: "jitgate-api", Env: st.Env(brokerEnv)})
	sweeper := lambdatest.Start(t, lambdatest.Config{Binary: bins["sweeper"], Name: "jitgate-sweeper", Env: st.Env(brokerEnv)})
	event, err := os.ReadFile("api/testdata/apigw-v2-request.json")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, token string, body any) (int, []byte) {
		return lambdatest.HTTPEvent(t, api, event, method, path, token, body)
	}
	store, err := dynamo.New(dynamo.Config{Client: st.DynamoDB, Table: st.Table})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("exec grant: request, approve, run in the runner function, recording in S3", func(t *testing.T) {
		sql := "SELECT name, email, card_number FROM users ORDER BY id"
		status, body := call("POST", "/v1/grants", agent, map[string]string{"target": "orders-db", "sql": sql, "reason": "support ticket 7"})
		if status != 202 {
			t.Fatalf("request: %d %s", status, body)
		}
		var g struct{ ID, State string }
		_ = json.Unmarshal(body, &g)
		if stored, err := store.Get(ctx, g.ID); err != nil || stored.State != grant.Pending || stored.OperationHash != grant.HashOperation(sql) {
			t.Fatalf("grant in DynamoDB after the request: %+v, %v", stored, err)
		}
		if status, body = call("POST", "/v1/grants/"+g.ID+"/run", agent, nil); status != 409 {
			t.Errorf("run before approval: %d %s", status, body)
		}
		if status, body = call("POST", "/v1/grants/"+g.ID+"/approve", dba, map[string]string{"reason": "ok"}); status != 200 {
			t.Fatalf("approve: %d %s", status, body)
		}
		status, body = call("POST", "/v1/grants/"+g.ID+"/run", agent, nil)
		if status != 200 {
			t.Fatalf("run: %d %s\nrunner output:\n%s", status, body, runner.Output())
		}
		var run struct {
			Result    spec.Result `json:"result"`
			Recording string      `json:"recording"`
		}
		if err := json.Unmarshal(body, &run); err != nil {
			t.Fatal(err)
		}
		if len(run.Result.Rows) != 3 || run.Result.Rows[0][0] == nil || *run.Result.Rows[0][0] != "Ada Lovelace" {
			t.Errorf("result %s", body)
		}
		for _, secret := range append(append([]string{}, shopdb.Cards...), shopdb.Emails...) {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("the result shows %q unmasked", secret)
			}
		}
		key := "recordings/" + g.ID + record.Ext
		if run.Recording != "s3://"+st.Bucket+"/"+key {
			t.Fatalf("recording %q, want s3://%s/%s", run.Recording, st.Bucket, key)
		}
		raw, obj := st.GetObject(t, key)
		if obj.ServerSideEncryption != "aws:kms" || (isMoto && obj.ObjectLockMode != "GOVERNANCE") {
			t.Errorf("recording object: encryption %q lock %q", obj.ServerSideEncryption, obj.ObjectLockMode)
		}
		path := filepath.Join(t.TempDir(), g.ID+record.Ext)
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		hdr, events, err := record.ReadFile(path)
		if err != nil || hdr.GrantID != g.ID {
			t.Fatalf("recording from S3: header %+v, %v", hdr, err)
		}
		sawQuery := false
		for _, ev := range events {
			if strings.Contains(ev.Statement, "card_number FROM users") {
				sawQuery = true
			}
		}
		if !sawQuery {
			t.Errorf("the recording does not hold the statement (%d events)", len(events))
		}
		for _, c := range shopdb.Cards {
			if bytes.Contains(raw, []byte(c)) {
				t.Errorf("the recording holds card %q unmasked", c)
			}
		}
		final, err := store.Get(ctx, g.ID)
		if err != nil || final.State != grant.Ended || !final.CredentialRevoked || final.LeaseID == "" {
			t.Errorf("grant after the run: %+v, %v; want ended with its credential revoked", final, err)
		}
		for _, l := range v.Leases() {
			if l == final.LeaseID {
				t.Errorf("lease %s still open after the run", l)
			}
		}
	})

	t.Run("session grant: ECS task with no secret in its overrides, stopped at expiry", func(t *testing.T) {
		status, body := call("POST", "/v1/grants", agent, map[string]string{"target": "orders-db", "mode": "session", "access": "read", "ttl": "3s"})
		if status != 201 {
			t.Fatalf("request: %d %s", status, body)
		}
		var g struct{ ID string }
		_ = json.Unmarshal(body, &g)
		status, body = call("POST", "/v1/grants/"+g.ID+"/session", agent, nil)
		if status != 200 {
			t.Fatalf("open session: %d %s\napi output:\n%s", status, body, api.Output())
		}
		var sess struct {
			Host, Port, User, Password string
		}
		_ = json.Unmarshal(body, &sess)
		if sess.Port != "5432" || strings.HasPrefix(sess.Host, "127.") || sess.Password == "" {
			t.Errorf("session answer %s; want the task's private address", body)
		}
		out, err := st.ECS.ListTasks(ctx, &awsecs.ListTasksInput{Cluster: aws.String(st.Cluster), StartedBy: aws.String(ecs.StartedBy)})
		if err != nil || len(out.TaskArns) != 1 {
			t.Fatalf("session tasks: %v, %v", out, err)
		}
		arn := out.TaskArns[0]
		d, err := st.ECS.DescribeTasks(ctx, &awsecs.DescribeTasksInput{Cluster: aws.String(st.Cluster), Tasks: []string{arn}})
		if err != nil || len(d.Tasks) != 1 {
			t.Fatal(err)
		}
		ov := d.Tasks[0].Overrides.ContainerOverrides
		if len(ov) != 1 || len(ov[0].Environment) != 2 {
			t.Fatalf("overrides %+v", ov)
		}
		vars := map[string]string{}
		for _, kv := range ov[0].Environment {
			vars[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
		if vars[ecs.EnvGrantID] != g.ID || vars[ecs.EnvWrapToken] == "" {
			t.Fatalf("override variables: names %v", keys(vars))
		}
		// Play the task: unwrap the spec once, as the runner in ECS would,
		// and learn the secrets that must appear nowhere else.
		gs, err := launchlambda.UnwrapGrant(ctx, v.Client(), vars[ecs.EnvWrapToken], g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(gs.ClientSecret) != sess.Password || gs.Credential.Password == "" || gs.Listen != "0.0.0.0:5432" {
			t.Errorf("the wrapped spec does not carry this session's secrets (listen %q)", gs.Listen)
		}
		secrets := []string{string(gs.Credential.Password), string(gs.ClientSecret), string(gs.Mask.TokenKey)}
		if dump, err := moto.Dump(ctx); err != nil && isMoto {
			t.Fatal(err)
		} else if err == nil {
			if !bytes.Contains(dump, []byte(g.ID)) {
				t.Fatal("moto's state does not mention the grant; the search would prove nothing")
			}
			for i, s := range secrets {
				if s != "" && bytes.Contains(dump, []byte(s)) {
					t.Errorf("moto's state (RunTask overrides, tags, logs…) holds secret #%d", i)
				}
			}
		}
		for _, env := range []string{runner.Output(), api.Output()} {
			for i, s := range secrets {
				if s != "" && strings.Contains(env, s) {
					t.Errorf("a function logged secret #%d", i)
				}
			}
		}

		// At expiry the task is stopped and the credential revoked; the
		// sweeper, run after it, finds nothing left to do for this grant.
		deadline := time.Now().Add(30 * time.Second)
		var last ecstypes.Task
		for time.Now().Before(deadline) {
			d, err := st.ECS.DescribeTasks(ctx, &awsecs.DescribeTasksInput{Cluster: aws.String(st.Cluster), Tasks: []string{arn}})
			if err == nil && len(d.Tasks) == 1 {
				last = d.Tasks[0]
				if aws.ToString(last.LastStatus) == "STOPPED" {
					break
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		if aws.ToString(last.LastStatus) != "STOPPED" {
			t.Fatalf("task still %s 30s after its 3s grant", aws.ToString(last.LastStatus))
		}
		t.Logf("session task stopped: %s", aws.ToString(last.StoppedReason))
		if out := api.Output(); strings.Contains(out, `"level":"ERROR"`) {
			t.Logf("the api function logged errors:\n%s", out)
		}
		var final *grant.Grant
		for time.Now().Before(deadline) {
			if final, err = store.Get(ctx, g.ID); err == nil && final.State.Terminal() && final.CredentialRevoked {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if final == nil || !final.State.Terminal() || !final.CredentialRevoked {
			t.Fatalf("grant after expiry: %+v", final)
		}
		if final.ExpiresAt.After(time.Now()) {
			t.Errorf("grant ended before its expiry %v", final.ExpiresAt)
		}
		ev, _ := os.ReadFile("sweeper/testdata/scheduled-event.json")
		rep, err := sweeper.Invoke(ctx, ev)
		if err != nil || !strings.Contains(string(rep), `"Errors":null`) || strings.Contains(string(rep), g.ID) {
			t.Errorf("sweep after the session: %s, %v", rep, err)
		}
	})
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
