// Package deploy is the AWS deployment's wiring, shared by the three Lambda
// functions (functions/api, functions/runner, functions/sweeper) and the ECS
// session task: it reads a function's configuration from its environment, as
// terraform/modules/jitgate sets it, and builds what they share — the AWS
// clients, the DynamoDB grant store, the S3 recording and audit sinks, the
// Vault client, and for the API and the sweeper the broker service itself.
// Like cmd/jitgate, it is allowed to read the environment and files; the
// library packages it wires are not.
//
// Environment (AWS_* variables are the SDK's own: AWS_REGION, credentials from
// the function's role, AWS_ENDPOINT_URL[_<SERVICE>] for LocalStack or moto):
//
//	JITGATE_TABLE               DynamoDB grants table (all)
//	JITGATE_BUCKET              recordings bucket (all)
//	JITGATE_RECORDING_PREFIX    key prefix of recordings; default "recordings/"
//	JITGATE_AUDIT_PREFIX        key prefix of audit log segments; default "audit/"
//	JITGATE_KMS_KEY_ID          KMS key objects are encrypted with; default aws/s3
//	JITGATE_RECORDING_SIGNING_KEY  KMS key (ECC_NIST_EDWARDS25519 or ECC_NIST_P256, SIGN_VERIFY)
//	                            the runner signs recordings with (kms:Sign, kms:GetPublicKey);
//	                            unset: recordings are unsigned (hashes and chain only)
//	JITGATE_OBJECT_LOCK_MODE    none | governance | compliance; default none
//	JITGATE_OBJECT_LOCK_DAYS    retention of each object when locking
//	JITGATE_S3_PATH_STYLE       true for LocalStack and moto
//	JITGATE_POLICY_URI          s3://bucket/key or file:/path of the policy YAML (api, sweeper)
//	JITGATE_MASK_KEY_URI        s3://… or file:… of the "token" mask key (api, sweeper);
//	                            unset: a random key per execution environment
//	JITGATE_RUNNER_FUNCTION     runner function name or ARN; unset: exec grants are refused
//	JITGATE_ECS_CLUSTER, JITGATE_ECS_TASK_DEFINITION, JITGATE_ECS_CONTAINER,
//	JITGATE_ECS_SUBNETS, JITGATE_ECS_SECURITY_GROUPS (comma-separated),
//	JITGATE_ECS_PORT            session tasks; unset cluster: session grants are refused
//	JITGATE_ECS_STOP_GRACE      how long a task may outlive its grant's deadline; default 30s
//	JITGATE_ECS_POLL            DescribeTasks interval; default 2s
//	JITGATE_MAX_WAIT            cap of ?wait= long polls; default 25s (API Gateway's limit is 30s)
//	JITGATE_RUN_TIMEOUT         bound of one exec run; default 2m
//	JITGATE_LISTEN              address the API serves on outside Lambda; default 127.0.0.1:8080
//	VAULT_ADDR, VAULT_TOKEN,…   Vault client (credentials, wrapping); the runner and the
//	                            ECS task need only VAULT_ADDR: unwrapping needs no token
//	JITGATE_VAULT_AWS_ROLE      log in to Vault with the AWS IAM auth method as this Vault
//	                            role (api, sweeper), instead of a VAULT_TOKEN
//	JITGATE_VAULT_AWS_MOUNT     that auth method's mount; default "aws"
//	JITGATE_VAULT_SERVER_ID     its iam_server_id_header_value
package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
)

// Env is a function's configuration.
type Env struct {
	Table           string
	Bucket          string
	RecordingPrefix string
	AuditPrefix     string
	KMSKeyID        string
	LockMode        s3sink.LockMode
	LockDays        int
	PathStyle       bool
	PolicyURI       string
	MaskKeyURI      string
	RunnerFunction  string
	ECS             ECSEnv
	MaxWait         time.Duration
	RunTimeout      time.Duration
	Listen          string
	// FunctionName is AWS_LAMBDA_FUNCTION_NAME ("" outside Lambda).
	FunctionName string
	// VaultAddr is VAULT_ADDR; the Vault client reads the other VAULT_* itself.
	VaultAddr string
	// VaultAWSRole, VaultAWSMount and VaultServerID configure the AWS IAM
	// login (functions/internal/vaultauth).
	VaultAWSRole, VaultAWSMount, VaultServerID string
	// RecordingSigningKey is the KMS key (id, ARN or alias) the runner signs
	// recordings with (ephemeral/record/sign/kmssign); "" records unsigned.
	RecordingSigningKey string
}

// ECSEnv places session tasks.
type ECSEnv struct {
	Cluster, TaskDefinition, Container string
	Subnets, SecurityGroups            []string
	Port                               int
	StopGrace, Poll                    time.Duration
}

// Enabled reports whether session tasks are configured.
func (e ECSEnv) Enabled() bool { return e.Cluster != "" }

// FromEnv reads the configuration with getenv (os.Getenv in main). Malformed
// values are errors; what a function needs is checked by Require.
func FromEnv(getenv func(string) string) (Env, error) {
	e := Env{
		Table:               getenv("JITGATE_TABLE"),
		Bucket:              getenv("JITGATE_BUCKET"),
		RecordingPrefix:     orDefault(getenv("JITGATE_RECORDING_PREFIX"), "recordings/"),
		AuditPrefix:         orDefault(getenv("JITGATE_AUDIT_PREFIX"), "audit/"),
		KMSKeyID:            getenv("JITGATE_KMS_KEY_ID"),
		RecordingSigningKey: getenv("JITGATE_RECORDING_SIGNING_KEY"),
		PolicyURI:           getenv("JITGATE_POLICY_URI"),
		MaskKeyURI:          getenv("JITGATE_MASK_KEY_URI"),
		RunnerFunction:      getenv("JITGATE_RUNNER_FUNCTION"),
		Listen:              orDefault(getenv("JITGATE_LISTEN"), "127.0.0.1:8080"),
		FunctionName:        getenv("AWS_LAMBDA_FUNCTION_NAME"),
		VaultAddr:           getenv("VAULT_ADDR"),
		VaultAWSRole:        getenv("JITGATE_VAULT_AWS_ROLE"),
		VaultAWSMount:       orDefault(getenv("JITGATE_VAULT_AWS_MOUNT"), "aws"),
		VaultServerID:       getenv("JITGATE_VAULT_SERVER_ID"),
		ECS: ECSEnv{
			Cluster:        getenv("JITGATE_ECS_CLUSTER"),
			TaskDefinition: getenv("JITGATE_ECS_TASK_DEFINITION"),
			Container:      orDefault(getenv("JITGATE_ECS_CONTAINER"), "proxy"),
			Subnets:        list(getenv("JITGATE_ECS_SUBNETS")),
			SecurityGroups: list(getenv("JITGATE_ECS_SECURITY_GROUPS")),
		},
	}
	var err error
	if e.LockMode, err = s3sink.ParseLockMode(getenv("JITGATE_OBJECT_LOCK_MODE")); err != nil {
		return Env{}, fmt.Errorf("deploy: JITGATE_OBJECT_LOCK_MODE: %w", err)
	}
	if e.LockDays, err = intVar(getenv, "JITGATE_OBJECT_LOCK_DAYS", 0); err != nil {
		return Env{}, err
	}
	if (e.LockMode != s3sink.NoLock) != (e.LockDays > 0) {
		return Env{}, fmt.Errorf("deploy: JITGATE_OBJECT_LOCK_MODE and JITGATE_OBJECT_LOCK_DAYS go together (mode %s, %d days)", e.LockMode, e.LockDays)
	}
	if e.ECS.Port, err = intVar(getenv, "JITGATE_ECS_PORT", 5432); err != nil {
		return Env{}, err
	}
	if e.ECS.StopGrace, err = durationVar(getenv, "JITGATE_ECS_STOP_GRACE", 30*time.Second); err != nil {
		return Env{}, err
	}
	if e.ECS.Poll, err = durationVar(getenv, "JITGATE_ECS_POLL", 2*time.Second); err != nil {
		return Env{}, err
	}
	if e.PathStyle, err = boolVar(getenv, "JITGATE_S3_PATH_STYLE"); err != nil {
		return Env{}, err
	}
	if e.MaxWait, err = durationVar(getenv, "JITGATE_MAX_WAIT", 25*time.Second); err != nil {
		return Env{}, err
	}
	if e.RunTimeout, err = durationVar(getenv, "JITGATE_RUN_TIMEOUT", 2*time.Minute); err != nil {
		return Env{}, err
	}
	if e.ECS.Enabled() && (e.ECS.TaskDefinition == "" || len(e.ECS.Subnets) == 0 || len(e.ECS.SecurityGroups) == 0) {
		return Env{}, fmt.Errorf("deploy: JITGATE_ECS_CLUSTER is set: JITGATE_ECS_TASK_DEFINITION, JITGATE_ECS_SUBNETS and JITGATE_ECS_SECURITY_GROUPS are required too")
	}
	return e, nil
}

// Need names what a function requires.
type Need int

const (
	NeedTable Need = 1 << iota
	NeedBucket
	NeedPolicy
	NeedVault
)

// Require reports the first missing setting among need.
func (e Env) Require(need Need) error {
	var missing []string
	if need&NeedTable != 0 && e.Table == "" {
		missing = append(missing, "JITGATE_TABLE")
	}
	if need&NeedBucket != 0 && e.Bucket == "" {
		missing = append(missing, "JITGATE_BUCKET")
	}
	if need&NeedPolicy != 0 && e.PolicyURI == "" {
		missing = append(missing, "JITGATE_POLICY_URI")
	}
	if need&NeedVault != 0 && e.VaultAddr == "" {
		missing = append(missing, "VAULT_ADDR")
	}
	if len(missing) > 0 {
		return fmt.Errorf("deploy: missing configuration: %s", strings.Join(missing, ", "))
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func intVar(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("deploy: %s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

func boolVar(getenv func(string) string, name string) (bool, error) {
	v := getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("deploy: %s=%q is not true or false", name, v)
	}
	return b, nil
}

func durationVar(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("deploy: %s=%q is not a positive duration such as 30s", name, v)
	}
	return d, nil
}
