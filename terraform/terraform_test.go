// Package terraform_test checks terraform/: formatting, init and validate of
// the module and the LocalStack example against the preinstalled provider
// mirror, then an apply of the example against moto's server, a check of what
// it created, and a grant driven through the deployed resources by the real
// API function binary (under the Lambda Runtime Interface Emulator, with the
// environment Terraform gave the function).
package terraform_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	jgcreds "github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/broker/launch/ecs"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/dynamo"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/awstest"
	"github.com/jitgate/jitgate/test/lambdatest"
	"github.com/jitgate/jitgate/test/vaulttest"
)

func terraformBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform is not on PATH: install Terraform >= 1.5 to run the terraform/ checks")
	}
	return bin
}

// pluginDir finds the filesystem mirror holding registry.terraform.io
// (JITGATE_TF_PLUGIN_DIR wins).
func pluginDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("JITGATE_TF_PLUGIN_DIR"); d != "" {
		return d
	}
	for _, pat := range []string{"/*/registry.terraform.io", "/*/*/registry.terraform.io", "/*/*/*/registry.terraform.io"} {
		ms, _ := filepath.Glob(pat)
		for _, m := range ms {
			if _, err := os.Stat(filepath.Join(m, "hashicorp", "aws")); err == nil {
				return filepath.Dir(m)
			}
		}
	}
	t.Fatal("no Terraform provider mirror with hashicorp/aws found (set JITGATE_TF_PLUGIN_DIR)")
	return ""
}

type tf struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func (x tf) run(args ...string) []byte {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, x.bin, args...)
	cmd.Dir = x.dir
	cmd.Env = append(os.Environ(), x.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		x.t.Fatalf("terraform %s in %s: %v\n%s\n%s", strings.Join(args, " "), x.dir, err, tail(out.String()), errb.String())
	}
	return out.Bytes()
}

func tail(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

// copyTree copies terraform/ so init writes no lock file or .terraform
// into the repository.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "terraform")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (d.Name() == ".terraform" || strings.HasPrefix(d.Name(), "testdata")) {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(p, ".go") || strings.Contains(p, "terraform.tfstate") || strings.HasSuffix(p, ".lock.hcl") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func base(t *testing.T) (string, []string) {
	bin := terraformBin(t)
	// No user CLI config (provider installation rules, credentials helpers).
	return bin, []string{"TF_CLI_CONFIG_FILE=/dev/null", "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1"}
}

// TestFormatAndValidate: terraform fmt -check, then init (no backend, the
// provider mirror only) and validate, on the module and the example.
func TestFormatAndValidate(t *testing.T) {
	t.Parallel()
	bin, env := base(t)
	plugins := pluginDir(t)
	wd, _ := os.Getwd()
	tf{t, bin, wd, env}.run("fmt", "-check", "-recursive", "-diff", ".")
	tree := copyTree(t, wd)
	for _, d := range []string{"modules/jitgate", "examples/localstack"} {
		x := tf{t, bin, filepath.Join(tree, d), env}
		x.run("init", "-backend=false", "-input=false", "-no-color", "-plugin-dir="+plugins)
		out := x.run("validate", "-no-color", "-json")
		var v struct {
			Valid        bool
			ErrorCount   int `json:"error_count"`
			WarningCount int `json:"warning_count"`
			Diagnostics  []struct{ Severity, Summary, Detail string }
		}
		if err := json.Unmarshal(out, &v); err != nil || !v.Valid || v.ErrorCount != 0 {
			t.Errorf("%s: validate %s", d, out)
		}
		for _, dg := range v.Diagnostics {
			t.Logf("%s: %s: %s %s", d, dg.Severity, dg.Summary, dg.Detail)
		}
	}
}

// TestExamplePolicyParses: the policy the example deploys is a valid policy.
func TestExamplePolicyParses(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("examples/localstack/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse("examples/localstack/policy.yaml", b); err != nil {
		t.Fatal(err)
	}
}

// fakeMinter issues made-up credentials: the apply test checks the AWS side
// and never connects to a database.
type fakeMinter struct{}

func (fakeMinter) Issue(_ context.Context, r jgcreds.Request) (spec.Credential, error) {
	return spec.Credential{Username: "v-" + r.GrantID, Password: spec.WireSecret("pw-terraform-test-" + r.GrantID), LeaseID: "x", Expires: r.Expires}, nil
}
func (fakeMinter) Revoke(context.Context, spec.Credential) error { return nil }

const testPolicy = `version: 1
issuers:
  - name: dev
    issuer: %s
    audience: api://jitgate
    groups_claim: groups
    dev: true
targets:
  - name: orders-db
    kind: postgres
    address: 10.42.9.9:5432
    database: shop
    credentials: {source: vault, vault_mount: database, vault_roles: {read: shop_read}}
rules:
  - name: exec-needs-dba
    when: '"ai-agents" in identity.groups'
    targets: [orders-db]
    modes: [exec]
    access: read
    approval: {approvers: {groups: [dba]}}
  - name: sessions
    when: '"ai-agents" in identity.groups'
    targets: [orders-db]
    modes: [session]
    access: read
`

// TestApplyExampleAgainstMoto applies terraform/examples/localstack to moto,
// checks the resources, and drives grants through them with the real API
// function: an exec grant requested and approved (policy from the deployed
// bucket, grant in the deployed table, audit in the deployed bucket), a
// session grant launched as a task of the deployed cluster and task
// definition in the deployed subnet and security group.
func TestApplyExampleAgainstMoto(t *testing.T) {
	t.Parallel()
	bin, env := base(t)
	plugins := pluginDir(t)
	ctx := t.Context()
	apiBin := lambdatest.Build(t, "./functions/api")
	moto := awstest.Start(t)
	if err := moto.SetTransition(ctx, "ecs::task", awstest.Manual, 1_000_000); err != nil {
		t.Fatal(err)
	}
	v := vaulttest.Start(t, vaulttest.Config{Minter: fakeMinter{}, Roles: map[string]spec.Access{"shop_read": spec.Read}})
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	// Terraform uploads the zips; the function runs from apiBin under the
	// emulator, so placeholders will do.
	arts := t.TempDir()
	for _, f := range functions {
		writeZip(t, filepath.Join(arts, f+".zip"), []byte("#!/bin/sh\nexit 1\n"))
	}
	wd, _ := os.Getwd()
	tree := copyTree(t, wd)
	x := tf{t, bin, filepath.Join(tree, "examples/localstack"), env}
	x.run("init", "-backend=false", "-input=false", "-no-color", "-plugin-dir="+plugins)
	varsFile := filepath.Join(t.TempDir(), "test.tfvars.json")
	vars, _ := json.Marshal(map[string]any{
		"endpoint": moto.Endpoint, "artifacts_dir": arts, "policy_yaml": fmt.Sprintf(testPolicy, iss.URL()),
		"vault_addr": v.Addr(), "vault_token": v.Token, "name": "jg-tftest",
	})
	if err := os.WriteFile(varsFile, vars, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	x.run("apply", "-auto-approve", "-input=false", "-no-color", "-var-file="+varsFile)
	t.Logf("terraform apply against moto took %s", time.Since(start).Round(time.Second))
	var outputs map[string]struct{ Value json.RawMessage }
	if err := json.Unmarshal(x.run("output", "-json"), &outputs); err != nil {
		t.Fatal(err)
	}
	out := func(name string) string {
		var s string
		if err := json.Unmarshal(outputs[name].Value, &s); err != nil {
			t.Fatalf("output %s: %s", name, outputs[name].Value)
		}
		return s
	}
	table, bucket, keyARN := out("table_name"), out("bucket_name"), out("kms_key_arn")
	if !strings.HasPrefix(out("broker_url"), "https://") {
		t.Errorf("broker_url %q", out("broker_url"))
	}

	cfg := moto.Config()
	ddb := dynamodb.NewFromConfig(cfg)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	lam := awslambda.NewFromConfig(cfg)
	ecsc := awsecs.NewFromConfig(cfg)

	t.Run("table matches broker/store/dynamo", func(t *testing.T) {
		d, err := ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatal(err)
		}
		tb := d.Table
		if len(tb.KeySchema) != 1 || aws.ToString(tb.KeySchema[0].AttributeName) != dynamo.AttrID {
			t.Errorf("key schema %+v", tb.KeySchema)
		}
		idx := map[string][2]string{}
		for _, g := range tb.GlobalSecondaryIndexes {
			var hash, rng string
			for _, k := range g.KeySchema {
				if k.KeyType == ddbtypes.KeyTypeHash {
					hash = aws.ToString(k.AttributeName)
				} else {
					rng = aws.ToString(k.AttributeName)
				}
			}
			idx[aws.ToString(g.IndexName)] = [2]string{hash, rng}
		}
		want := map[string][2]string{dynamo.IndexByState: {dynamo.AttrState, dynamo.AttrSort}, dynamo.IndexByRequester: {dynamo.AttrRequester, dynamo.AttrSort}}
		if fmt.Sprint(idx) != fmt.Sprint(want) {
			t.Errorf("indexes %v, want %v", idx, want)
		}
		ttl, err := ddb.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
		if err != nil || aws.ToString(ttl.TimeToLiveDescription.AttributeName) != dynamo.AttrTTL || ttl.TimeToLiveDescription.TimeToLiveStatus != ddbtypes.TimeToLiveStatusEnabled {
			t.Errorf("ttl %+v, %v", ttl, err)
		}
		if tb.SSEDescription == nil || tb.SSEDescription.SSEType != ddbtypes.SSETypeKms {
			t.Errorf("table encryption %+v", tb.SSEDescription)
		}
	})

	t.Run("bucket: versioning, KMS, object lock, no public access, lifecycle", func(t *testing.T) {
		b := aws.String(bucket)
		if v, err := s3c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: b}); err != nil || v.Status != "Enabled" {
			t.Errorf("versioning %v, %v", v, err)
		}
		if e, err := s3c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: b}); err != nil ||
			string(e.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm) != "aws:kms" ||
			aws.ToString(e.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.KMSMasterKeyID) != keyARN {
			t.Errorf("encryption %v", err)
		}
		if l, err := s3c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: b}); err != nil ||
			l.ObjectLockConfiguration.ObjectLockEnabled != "Enabled" || l.ObjectLockConfiguration.Rule.DefaultRetention.Mode != "GOVERNANCE" {
			t.Errorf("object lock %v", err)
		}
		if p, err := s3c.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: b}); err != nil ||
			!aws.ToBool(p.PublicAccessBlockConfiguration.BlockPublicAcls) || !aws.ToBool(p.PublicAccessBlockConfiguration.BlockPublicPolicy) ||
			!aws.ToBool(p.PublicAccessBlockConfiguration.IgnorePublicAcls) || !aws.ToBool(p.PublicAccessBlockConfiguration.RestrictPublicBuckets) {
			t.Errorf("public access block %v", err)
		}
		if l, err := s3c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: b}); err != nil || len(l.Rules) != 2 {
			t.Errorf("lifecycle %v", err)
		}
	})

	var apiEnv map[string]string
	t.Run("functions: provided.al2023, bootstrap, environment, URL", func(t *testing.T) {
		for _, f := range functions {
			c, err := lam.GetFunctionConfiguration(ctx, &awslambda.GetFunctionConfigurationInput{FunctionName: aws.String("jg-tftest-" + f)})
			if err != nil {
				t.Fatal(err)
			}
			if c.Runtime != "provided.al2023" || aws.ToString(c.Handler) != "bootstrap" || c.Architectures[0] != "x86_64" {
				t.Errorf("%s: runtime %s handler %s architectures %v", f, c.Runtime, aws.ToString(c.Handler), c.Architectures)
			}
			e := c.Environment.Variables
			if e["JITGATE_TABLE"] != table || e["JITGATE_BUCKET"] != bucket || e["VAULT_ADDR"] != v.Addr() {
				t.Errorf("%s: environment %v", f, keys(e))
			}
			if _, has := e["VAULT_TOKEN"]; has != (f != "runner") {
				t.Errorf("%s: has VAULT_TOKEN = %v; only the api and sweeper may", f, has)
			}
			if k, has := e["JITGATE_RECORDING_SIGNING_KEY"]; has != (f == "runner") || (has && k != out("recording_signing_key_arn")) {
				t.Errorf("%s: JITGATE_RECORDING_SIGNING_KEY = %q (set %v); only the runner signs, with the signing key", f, k, has)
			}
			if f == "api" {
				apiEnv = e
			}
		}
		if _, err := lam.GetFunctionUrlConfig(ctx, &awslambda.GetFunctionUrlConfigInput{FunctionName: aws.String("jg-tftest-api")}); err != nil {
			t.Errorf("function URL: %v", err)
		}
	})

	t.Run("least privilege and schedule (deployed state)", func(t *testing.T) {
		var state struct {
			Values struct {
				RootModule struct {
					ChildModules []struct {
						Resources []struct {
							Address string
							Values  map[string]any
						}
					} `json:"child_modules"`
				} `json:"root_module"`
			}
		}
		if err := json.Unmarshal(x.run("show", "-json"), &state); err != nil {
			t.Fatal(err)
		}
		policies := map[string]string{}
		var schedule, keyRotation, signingUsage, signingSpec any
		fnKeys := map[string]any{}
		for _, m := range state.Values.RootModule.ChildModules {
			for _, r := range m.Resources {
				switch {
				case strings.HasPrefix(r.Address, "module.jitgate.aws_iam_role_policy.fn["):
					policies[strings.Trim(strings.TrimPrefix(r.Address, "module.jitgate.aws_iam_role_policy.fn["), `"]`)] = fmt.Sprint(r.Values["policy"])
				case r.Address == "module.jitgate.aws_iam_role_policy.session_task":
					policies["session_task"] = fmt.Sprint(r.Values["policy"])
				case r.Address == "module.jitgate.aws_cloudwatch_event_rule.sweeper":
					schedule = r.Values["schedule_expression"]
				case strings.HasPrefix(r.Address, "module.jitgate.aws_lambda_function.fn["):
					fnKeys[r.Address] = r.Values["kms_key_arn"]
				case r.Address == "module.jitgate.aws_kms_key.main":
					keyRotation = r.Values["enable_key_rotation"]
				case r.Address == "module.jitgate.aws_kms_key.recording_signing":
					signingUsage, signingSpec = r.Values["key_usage"], r.Values["customer_master_key_spec"]
				}
			}
		}
		rules := []struct {
			role, action string
			allowed      bool
		}{
			{"runner", "dynamodb:GetItem", true}, {"runner", "dynamodb:PutItem", false}, {"runner", "lambda:InvokeFunction", false},
			{"runner", "ecs:RunTask", false}, {"runner", "s3:PutObject", true},
			{"api", "lambda:InvokeFunction", true}, {"api", "ecs:RunTask", true}, {"api", "iam:PassRole", true}, {"api", "dynamodb:PutItem", true},
			{"api", "s3:DeleteObject", false}, {"api", "s3:BypassGovernanceRetention", false}, {"api", "dynamodb:DeleteItem", false},
			{"sweeper", "ecs:StopTask", true}, {"sweeper", "ecs:RunTask", false}, {"sweeper", "lambda:InvokeFunction", false},
			{"session_task", "dynamodb:GetItem", true}, {"session_task", "dynamodb:PutItem", false}, {"session_task", "ecs:RunTask", false},
			// Only what runs a proxy signs recordings.
			{"runner", "kms:Sign", true}, {"session_task", "kms:Sign", true}, {"api", "kms:Sign", false}, {"sweeper", "kms:Sign", false},
		}
		for _, r := range rules {
			p, ok := policies[r.role]
			if !ok {
				t.Fatalf("no policy for %s in %v", r.role, keys(policies))
			}
			if got := strings.Contains(p, `"`+r.action+`"`); got != r.allowed {
				t.Errorf("%s may %s: %v, want %v", r.role, r.action, got, r.allowed)
			}
			if strings.Contains(p, `"*:*"`) || strings.Contains(p, `"s3:*"`) || strings.Contains(p, `"dynamodb:*"`) {
				t.Errorf("%s has a wildcard action", r.role)
			}
		}
		if schedule != "rate(1 minute)" || keyRotation != true {
			t.Errorf("sweeper schedule %v, key rotation %v", schedule, keyRotation)
		}
		if signingUsage != "SIGN_VERIFY" || signingSpec != "ECC_NIST_P256" {
			t.Errorf("recording signing key: usage %v, spec %v; want SIGN_VERIFY ECC_NIST_P256", signingUsage, signingSpec)
		}
		// moto neither stores nor echoes a function's kms_key_arn, so the
		// state cannot show it; the module sets it on every function.
		if len(fnKeys) != 3 {
			t.Errorf("%d functions in the state", len(fnKeys))
		}
	})

	t.Run("a grant through the deployed resources", func(t *testing.T) {
		if apiEnv == nil {
			t.Skip("no api environment")
		}
		if apiEnv["AWS_ENDPOINT_URL"] != moto.Endpoint {
			t.Fatalf("the deployed api points at %q, not moto", apiEnv["AWS_ENDPOINT_URL"])
		}
		kv := map[string]string{}
		for _, e := range moto.Env() {
			k, val, _ := strings.Cut(e, "=")
			kv[k] = val
		}
		for k, val := range apiEnv {
			kv[k] = val
		}
		kv["JITGATE_ECS_STOP_GRACE"] = "1h" // the test stops the task itself
		fn := lambdatest.Start(t, lambdatest.Config{Binary: apiBin, Name: "jg-tftest-api", Env: lambdatest.Env(kv)})
		event, err := os.ReadFile("../functions/api/testdata/apigw-v2-request.json")
		if err != nil {
			t.Fatal(err)
		}
		agent, _ := iss.Token("agent-1", []string{"ai-agents"}, "api://jitgate", nil)
		dba, _ := iss.Token("dba-1", []string{"dba"}, "api://jitgate", nil)
		status, body := lambdatest.HTTPEvent(t, fn, event, "POST", "/v1/grants", agent, map[string]string{"target": "orders-db", "sql": "SELECT 1"})
		if status != 202 {
			t.Fatalf("request: %d %s", status, body)
		}
		var g struct{ ID string }
		_ = json.Unmarshal(body, &g)
		if status, body = lambdatest.HTTPEvent(t, fn, event, "POST", "/v1/grants/"+g.ID+"/approve", dba, nil); status != 200 {
			t.Fatalf("approve: %d %s", status, body)
		}
		store, _ := dynamo.New(dynamo.Config{Client: ddb, Table: table})
		if got, err := store.Get(ctx, g.ID); err != nil || got.State != grant.Approved {
			t.Errorf("grant in the deployed table: %v, %v", got, err)
		}
		list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("audit/")})
		if err != nil || len(list.Contents) != 1 {
			t.Errorf("audit segments in the deployed bucket: %v, %v", list, err)
		}

		status, body = lambdatest.HTTPEvent(t, fn, event, "POST", "/v1/grants", agent, map[string]string{"target": "orders-db", "mode": "session", "ttl": "1m"})
		if status != 201 {
			t.Fatalf("session request: %d %s", status, body)
		}
		_ = json.Unmarshal(body, &g)
		status, body = lambdatest.HTTPEvent(t, fn, event, "POST", "/v1/grants/"+g.ID+"/session", agent, nil)
		if status != 200 {
			t.Fatalf("open session: %d %s\n%s", status, body, fn.Output())
		}
		tasks, err := ecsc.ListTasks(ctx, &awsecs.ListTasksInput{Cluster: aws.String(out("ecs_cluster_arn")), StartedBy: aws.String(ecs.StartedBy)})
		if err != nil || len(tasks.TaskArns) != 1 {
			t.Fatalf("session tasks in the deployed cluster: %v, %v", tasks, err)
		}
		d, err := ecsc.DescribeTasks(ctx, &awsecs.DescribeTasksInput{Cluster: aws.String(out("ecs_cluster_arn")), Tasks: tasks.TaskArns})
		if err != nil || len(d.Tasks) != 1 {
			t.Fatal(err)
		}
		task := d.Tasks[0]
		td := strings.TrimSuffix(aws.ToString(task.TaskDefinitionArn), ":1")
		if !strings.HasPrefix(out("session_task_definition_arn"), td) {
			t.Errorf("task definition %s, deployed %s", aws.ToString(task.TaskDefinitionArn), out("session_task_definition_arn"))
		}
		var sess struct{ Password string }
		_ = json.Unmarshal(body, &sess)
		var names []string
		for _, e := range task.Overrides.ContainerOverrides[0].Environment {
			names = append(names, aws.ToString(e.Name))
			for _, secret := range []string{"pw-terraform-test-" + g.ID, sess.Password} {
				if secret != "" && strings.Contains(aws.ToString(e.Value), secret) {
					t.Errorf("override %s holds a secret", aws.ToString(e.Name))
				}
			}
		}
		slices.Sort(names)
		if fmt.Sprint(names) != "[JITGATE_GRANT_ID JITGATE_WRAP_TOKEN]" || sess.Password == "" {
			t.Errorf("override variables %v", names)
		}
		if _, err := ecsc.StopTask(ctx, &awsecs.StopTaskInput{Cluster: aws.String(out("ecs_cluster_arn")), Task: task.TaskArn}); err != nil {
			t.Error(err)
		}
	})
}

var functions = []string{"api", "runner", "sweeper"}

// writeZip writes a deployment package holding one executable bootstrap.
func writeZip(t *testing.T, path string, bootstrap []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	hdr := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	hdr.SetMode(0o755)
	w, err := zw.CreateHeader(hdr)
	if err == nil {
		_, err = w.Write(bootstrap)
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
