package ecs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	jgcreds "github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/vault"
	"github.com/jitgate/jitgate/broker/launch/ecs"
	"github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/awstest"
	"github.com/jitgate/jitgate/test/vaulttest"
)

const (
	password  = "pw-5YVh2wq9y1a7bS4t"
	clientSec = "cs-E6uR8iP0oL2mKzq8"
	maskKey   = "mk-x7W6v5U4t3S2r1Q0"
)

var shared *awstest.Server

func TestMain(m *testing.M) {
	srv, err := awstest.StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = srv
	// Fargate keeps a task RUNNING while its container runs; moto's default
	// walks a task to STOPPED after a few DescribeTasks calls.
	if err := srv.SetTransition(context.Background(), "ecs::task", awstest.Manual, 1_000_000); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}

type noMinter struct{}

func (noMinter) Issue(context.Context, jgcreds.Request) (spec.Credential, error) {
	return spec.Credential{}, errors.New("not used")
}
func (noMinter) Revoke(context.Context, spec.Credential) error { return nil }

var seq atomic.Int64

type env struct {
	client  *awsecs.Client
	cluster string
	subnets []string
	vault   *vaulttest.Server
}

// newEnv creates a cluster and a Fargate task definition (with the
// per-container cpu and memory moto needs to place a task) on the shared
// server.
func newEnv(t *testing.T) env {
	t.Helper()
	ctx := t.Context()
	c := awsecs.NewFromConfig(shared.Config())
	n := seq.Add(1)
	cluster := fmt.Sprintf("jitgate-%d", n)
	if _, err := c.CreateCluster(ctx, &awsecs.CreateClusterInput{ClusterName: aws.String(cluster)}); err != nil {
		t.Fatal(err)
	}
	_, err := c.RegisterTaskDefinition(ctx, &awsecs.RegisterTaskDefinitionInput{
		Family: aws.String("jitgate-proxy"), NetworkMode: types.NetworkModeAwsvpc,
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate}, Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("proxy"), Image: aws.String("jitgate-runner:test"),
			Cpu: 256, Memory: aws.Int32(512), Essential: aws.Bool(true),
			PortMappings: []types.PortMapping{{ContainerPort: aws.Int32(5432), Protocol: types.TransportProtocolTcp}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	subnets, err := shared.DefaultSubnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := vaulttest.Start(t, vaulttest.Config{Minter: noMinter{}, Roles: map[string]spec.Access{"r": spec.Read}})
	return env{client: c, cluster: cluster, subnets: subnets[:1], vault: v}
}

func (e env) launcher(t *testing.T, mod ...func(*ecs.Config)) *ecs.Launcher {
	t.Helper()
	cfg := ecs.Config{Client: e.client, Cluster: e.cluster, TaskDefinition: "jitgate-proxy", Container: "proxy",
		Subnets: e.subnets, SecurityGroups: []string{"sg-0a1b2c3d4e5f60718"}, Wrapper: lambda.VaultWrapper{Client: e.vault.Client()},
		PollEvery: 20 * time.Millisecond, StopGrace: 50 * time.Millisecond,
		RecordingURI: func(id string) string { return "s3://recordings/recordings/" + id + ".jsonl" }}
	for _, m := range mod {
		m(&cfg)
	}
	l, err := ecs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sessionSpec(id string, deadline time.Time) *spec.Grant {
	return &spec.Grant{
		ID: id, Mode: spec.Session, Identity: "okta|alice", Rule: "r",
		Target:       spec.Target{Name: "db", Protocol: spec.Postgres, Address: "db.internal:5432", Database: "shop"},
		ClientSecret: spec.WireSecret(clientSec), Listen: "127.0.0.1:0", Deadline: deadline,
		Credential: spec.Credential{Username: "v-role-x", Password: spec.WireSecret(password), LeaseID: "database/creds/r/9", Expires: deadline.Add(time.Minute)},
		Guard:      spec.Guard{Access: spec.Read}, Mask: spec.Mask{Style: "token", TokenKey: spec.WireSecret(maskKey)},
		Record: spec.Record{Dir: "/tmp/recordings"},
	}
}

func (e env) task(t *testing.T, arn string) types.Task {
	t.Helper()
	out, err := e.client.DescribeTasks(t.Context(), &awsecs.DescribeTasksInput{Cluster: aws.String(e.cluster), Tasks: []string{arn}, Include: []types.TaskField{types.TaskFieldTags}})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("DescribeTasks %s: %v", arn, err)
	}
	return out.Tasks[0]
}

func (e env) tasks(t *testing.T, status types.DesiredStatus) []types.Task {
	t.Helper()
	out, err := e.client.ListTasks(t.Context(), &awsecs.ListTasksInput{Cluster: aws.String(e.cluster), DesiredStatus: status})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.TaskArns) == 0 {
		return nil
	}
	d, err := e.client.DescribeTasks(t.Context(), &awsecs.DescribeTasksInput{Cluster: aws.String(e.cluster), Tasks: out.TaskArns, Include: []types.TaskField{types.TaskFieldTags}})
	if err != nil {
		t.Fatal(err)
	}
	return d.Tasks
}

// TestRunTaskOverridesHoldNoSecret is the security property of the ECS path:
// what ECS (and anyone allowed to DescribeTasks) records about the task holds
// the grant id and a single-use wrapping token, never the credential, the
// client's grant secret or the mask key; the token unwraps to the full spec
// exactly once; the agent gets the task's private address.
func TestRunTaskOverridesHoldNoSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.launcher(t)
	g := sessionSpec("g_ecsnosecret", time.Now().Add(time.Hour))
	h, err := l.Launch(t.Context(), g)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Ready(t.Context())
	if err != nil || st.Type != spec.StatusReady || !strings.HasSuffix(st.Addr, ":5432") || strings.HasPrefix(st.Addr, "127.") || strings.HasPrefix(st.Addr, "0.0.0.0") {
		t.Fatalf("Ready: %+v, %v; want the task's private address on 5432", st, err)
	}
	running := e.tasks(t, types.DesiredStatusRunning)
	if len(running) != 1 {
		t.Fatalf("%d running tasks, want 1", len(running))
	}
	task := running[0]
	ov := task.Overrides.ContainerOverrides
	if len(ov) != 1 || aws.ToString(ov[0].Name) != "proxy" || len(ov[0].Environment) != 2 || len(ov[0].Command) != 0 || len(ov[0].EnvironmentFiles) != 0 {
		t.Fatalf("overrides %+v: want only the proxy container's two variables", ov)
	}
	vars := map[string]string{}
	for _, kv := range ov[0].Environment {
		vars[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
	}
	if vars[ecs.EnvGrantID] != g.ID || !strings.HasPrefix(vars[ecs.EnvWrapToken], "hvs.") {
		t.Fatalf("override variables %v", vars)
	}
	if aws.ToString(task.StartedBy) != ecs.StartedBy || aws.ToString(task.Group) != "jitgate:"+g.ID {
		t.Errorf("startedBy %q group %q", aws.ToString(task.StartedBy), aws.ToString(task.Group))
	}
	// Nothing moto stored (every service, every request it kept) holds a secret.
	dump, err := shared.Dump(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), g.ID) {
		t.Fatal("the dump does not even mention the grant; the search below would prove nothing")
	}
	for _, secret := range []string{password, clientSec, maskKey, "v-role-x"} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("moto's state holds %q", secret)
		}
	}
	// The token unwraps, once, to the spec: credential included, listening on
	// the task's interfaces.
	got, err := lambda.UnwrapGrant(t.Context(), e.vault.Client(), vars[ecs.EnvWrapToken], g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Credential.Password) != password || string(got.ClientSecret) != clientSec || got.Listen != "0.0.0.0:5432" {
		t.Errorf("unwrapped spec: password ok %v, secret ok %v, listen %q", string(got.Credential.Password) == password, string(got.ClientSecret) == clientSec, got.Listen)
	}
	if g.Listen != "127.0.0.1:0" {
		t.Errorf("Launch changed the caller's spec (Listen %q)", g.Listen)
	}
	if _, err := lambda.UnwrapGrant(t.Context(), e.vault.Client(), vars[ecs.EnvWrapToken], g.ID); !errors.Is(err, vault.ErrWrapToken) {
		t.Errorf("second unwrap: %v, want ErrWrapToken", err)
	}
	// Stop ends the task.
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if s := aws.ToString(e.task(t, aws.ToString(task.TaskArn)).LastStatus); s != "STOPPED" {
		t.Errorf("after Stop: %s", s)
	}
	exit, err := h.Wait(t.Context())
	if err != nil || exit.Type != spec.StatusExit || exit.Recording != "s3://recordings/recordings/"+g.ID+".jsonl" {
		t.Errorf("Wait after Stop: %+v, %v", exit, err)
	}
}

// TestWaitStopsTheTaskAtItsDeadline: a task that outlives its grant (a hung
// proxy) is stopped by the launcher once the deadline plus StopGrace passed.
func TestWaitStopsTheTaskAtItsDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.launcher(t)
	g := sessionSpec("g_ecsdeadline", time.Now().Add(300*time.Millisecond))
	h, err := l.Launch(t.Context(), g)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	exit, err := h.Wait(ctx)
	if err != nil || exit.Type != spec.StatusExit {
		t.Fatalf("Wait: %+v, %v", exit, err)
	}
	if time.Now().Before(g.Deadline) {
		t.Error("Wait returned before the grant's deadline")
	}
	stopped := e.tasks(t, types.DesiredStatusStopped)
	if len(stopped) != 1 || !strings.Contains(aws.ToString(stopped[0].StoppedReason), "grant deadline passed") {
		t.Fatalf("stopped tasks %d (reason %q), want the grant's task stopped at its deadline", len(stopped), reasonOf(stopped))
	}
}

func reasonOf(ts []types.Task) string {
	if len(ts) == 0 {
		return ""
	}
	return aws.ToString(ts[0].StoppedReason)
}

// TestStopOrphans: the sweeper stops tasks whose grant expired or ended while
// no broker watched, and leaves live ones running.
func TestStopOrphans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now()
	clock := now
	l := e.launcher(t, func(c *ecs.Config) { c.Now = func() time.Time { return clock } })
	grants := map[string]time.Time{
		"g_live":    now.Add(time.Hour),
		"g_expired": now.Add(time.Hour), // expired by moving the clock below
		"g_ended":   now.Add(time.Hour),
	}
	arn := map[string]string{}
	for id, dl := range grants {
		if id == "g_expired" {
			dl = now.Add(time.Minute)
		}
		if _, err := l.Launch(t.Context(), sessionSpec(id, dl)); err != nil {
			t.Fatal(err)
		}
	}
	for _, task := range e.tasks(t, types.DesiredStatusRunning) {
		arn[strings.TrimPrefix(aws.ToString(task.Group), "jitgate:")] = aws.ToString(task.TaskArn)
	}
	clock = now.Add(2 * time.Minute)
	var asked []string
	stopped, err := l.StopOrphans(t.Context(), func(_ context.Context, id string) (bool, error) {
		asked = append(asked, id)
		return id == "g_live", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range stopped {
		got[o.GrantID] = o.Reason
	}
	if len(got) != 2 || got["g_expired"] != "grant deadline passed" || got["g_ended"] != "grant is no longer active" {
		t.Errorf("stopped %v; want g_expired (deadline) and g_ended (not active)", got)
	}
	for _, id := range asked {
		if id == "g_expired" {
			t.Error("asked about a grant whose deadline had already passed")
		}
	}
	if s := aws.ToString(e.task(t, arn["g_live"]).LastStatus); s != "RUNNING" {
		t.Errorf("live grant's task is %s", s)
	}
	for _, id := range []string{"g_expired", "g_ended"} {
		if s := aws.ToString(e.task(t, arn[id]).LastStatus); s != "STOPPED" {
			t.Errorf("%s's task is %s", id, s)
		}
	}
	// A live() error leaves the task for the next sweep.
	errDown := errors.New("dynamodb unreachable")
	stopped, err = l.StopOrphans(t.Context(), func(context.Context, string) (bool, error) { return false, errDown })
	if !errors.Is(err, errDown) || len(stopped) != 0 {
		t.Errorf("live() failing: stopped %v, err %v", stopped, err)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.launcher(t)
	exec := sessionSpec("g_exec", time.Now().Add(time.Hour))
	exec.Mode, exec.Operation = spec.Exec, "SELECT 1"
	noSecret := sessionSpec("g_nosecret", time.Now().Add(time.Hour))
	noSecret.ClientSecret = ""
	for name, g := range map[string]*spec.Grant{"exec grant": exec, "no client secret": noSecret, "nil": nil} {
		if _, err := l.Launch(t.Context(), g); err == nil {
			t.Errorf("%s: Launch succeeded", name)
		}
	}
	e.vault.SetDown(true)
	if _, err := l.Launch(t.Context(), sessionSpec("g_sealed", time.Now().Add(time.Hour))); err == nil || !strings.Contains(err.Error(), "wrap") {
		t.Errorf("Vault sealed: %v", err)
	}
	e.vault.SetDown(false)
	bad := e.launcher(t, func(c *ecs.Config) { c.TaskDefinition = "no-such-task-definition" })
	if _, err := bad.Launch(t.Context(), sessionSpec("g_badtd", time.Now().Add(time.Hour))); err == nil {
		t.Error("Launch with a missing task definition succeeded")
	}
	if n := len(e.tasks(t, types.DesiredStatusRunning)); n != 0 {
		t.Errorf("%d tasks running after refused launches", n)
	}
	for _, tc := range []struct {
		mod  func(*ecs.Config)
		want string
	}{
		{func(c *ecs.Config) { c.SecurityGroups = nil }, "SecurityGroups are required"},
		{func(c *ecs.Config) { c.Subnets = nil }, "Subnets are required"},
		{func(c *ecs.Config) { c.Wrapper = nil }, "Wrapper is required"},
		{func(c *ecs.Config) { c.Container = "" }, "Container is required"},
		{func(c *ecs.Config) { c.Port = 70000 }, "out of range"},
	} {
		cfg := ecs.Config{Client: e.client, Cluster: "c", TaskDefinition: "t", Container: "p", Subnets: []string{"s"},
			SecurityGroups: []string{"sg"}, Wrapper: lambda.VaultWrapper{}}
		tc.mod(&cfg)
		if _, err := ecs.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want %q", err, tc.want)
		}
	}
}
