package deploy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/functions/internal/deploy"
)

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv(t *testing.T) {
	t.Parallel()
	e, err := deploy.FromEnv(getenv(map[string]string{
		"JITGATE_TABLE": "t", "JITGATE_BUCKET": "b", "JITGATE_OBJECT_LOCK_MODE": "COMPLIANCE", "JITGATE_OBJECT_LOCK_DAYS": "30",
		"JITGATE_ECS_CLUSTER": "c", "JITGATE_ECS_TASK_DEFINITION": "td", "JITGATE_ECS_SUBNETS": "s1, s2,", "JITGATE_ECS_SECURITY_GROUPS": "sg",
		"JITGATE_MAX_WAIT": "20s", "JITGATE_S3_PATH_STYLE": "true", "JITGATE_VAULT_AWS_ROLE": "jitgate-api",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if e.LockMode != s3sink.Compliance || e.LockDays != 30 || !e.PathStyle || e.MaxWait != 20*time.Second || e.RunTimeout != 2*time.Minute ||
		e.RecordingPrefix != "recordings/" || e.AuditPrefix != "audit/" || e.ECS.Port != 5432 || e.ECS.Container != "proxy" ||
		strings.Join(e.ECS.Subnets, "|") != "s1|s2" || e.ECS.StopGrace != 30*time.Second || e.VaultAWSMount != "aws" || e.Listen != "127.0.0.1:8080" {
		t.Errorf("env %+v", e)
	}
	if err := e.Require(deploy.NeedTable | deploy.NeedBucket | deploy.NeedPolicy | deploy.NeedVault); err == nil ||
		!strings.Contains(err.Error(), "JITGATE_POLICY_URI, VAULT_ADDR") {
		t.Errorf("Require: %v", err)
	}
}

func TestFromEnvRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"JITGATE_OBJECT_LOCK_MODE": "legal-hold"}, "unknown object lock mode"},
		{map[string]string{"JITGATE_OBJECT_LOCK_MODE": "governance"}, "go together"},
		{map[string]string{"JITGATE_OBJECT_LOCK_DAYS": "3"}, "go together"},
		{map[string]string{"JITGATE_OBJECT_LOCK_DAYS": "-3"}, "not a non-negative integer"},
		{map[string]string{"JITGATE_MAX_WAIT": "forever"}, "not a positive duration"},
		{map[string]string{"JITGATE_S3_PATH_STYLE": "yes please"}, "not true or false"},
		{map[string]string{"JITGATE_ECS_CLUSTER": "c"}, "JITGATE_ECS_TASK_DEFINITION"},
	} {
		if _, err := deploy.FromEnv(getenv(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.env, err, tc.want)
		}
	}
}

// TestModeRouterRefusesWhatIsNotConfigured: a deployment without a runner or
// without ECS refuses those grants with the setting to fix, never panics.
func TestModeRouterRefusesWhatIsNotConfigured(t *testing.T) {
	t.Parallel()
	r := &deploy.ModeRouter{}
	for mode, want := range map[spec.Mode]string{spec.Exec: "JITGATE_RUNNER_FUNCTION", spec.Session: "JITGATE_ECS_*", spec.ModeUnknown: "not enabled"} {
		if _, err := r.Launch(context.Background(), &spec.Grant{ID: "g_x", Mode: mode}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", mode, err, want)
		}
	}
}
