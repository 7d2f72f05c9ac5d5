// Command runner is the ephemeral proxy of the AWS deployment, one binary in
// two places:
//
//   - In Lambda (AWS_LAMBDA_RUNTIME_API is set) it runs one exec-mode grant
//     per invocation: the event is launch/lambda.Invocation (the grant id and
//     a single-use Vault wrapping token), the answer launch/lambda.Response
//     (the masked result, or the refusal, then the recording's S3 location).
//   - In an ECS task (JITGATE_WRAP_TOKEN is set, by launch/ecs's container
//     overrides) it serves one session grant until its deadline.
//
// Either way it unwraps the spec (credential included) from Vault once,
// checks it against the grant in DynamoDB (active, same identity, target,
// access and approved operation), runs it through ephemeral/session with the
// protocol engines, and stores the recording in S3 before it answers; a run
// whose recording cannot be stored is reported as failed and its result
// withheld. Revoking the credential stays with the broker.
//
// Configuration: functions/internal/deploy (JITGATE_TABLE, JITGATE_BUCKET,
// VAULT_ADDR, …). The function's role needs dynamodb:GetItem on the table,
// s3:PutObject (+ retention) under the recordings prefix, kms:GenerateDataKey
// on the bucket key, and kms:Sign + kms:GetPublicKey on the recording signing
// key (JITGATE_RECORDING_SIGNING_KEY); it needs no Vault token: unwrapping is authorised by the
// wrapping token itself.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/jitgate/jitgate/broker/launch/ecs"
	launchlambda "github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/ephemeral/engines"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/sign/kmssign"
	"github.com/jitgate/jitgate/functions/internal/deploy"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("function", "runner")
	// Read the two task variables first and drop them from the environment,
	// so nothing this process starts or prints can see the token again.
	taskGrant, taskToken := os.Getenv(ecs.EnvGrantID), os.Getenv(ecs.EnvWrapToken)
	_ = os.Unsetenv(ecs.EnvWrapToken)
	_ = os.Unsetenv(ecs.EnvGrantID)
	inLambda := os.Getenv("AWS_LAMBDA_RUNTIME_API") != ""

	r, err := setup(context.Background(), log)
	if err != nil {
		log.Error("runner setup failed", "err", err)
		os.Exit(1)
	}
	switch {
	case inLambda:
		lambda.Start(func(ctx context.Context, inv launchlambda.Invocation) (launchlambda.Response, error) {
			return r.exec(ctx, inv), nil
		})
	case taskToken != "":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := r.session(ctx, taskGrant, taskToken, os.Stdout); err != nil {
			log.Error("session ended with an error", "err", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "runner: not in Lambda (AWS_LAMBDA_RUNTIME_API unset) and no ECS task variables ("+ecs.EnvGrantID+", "+ecs.EnvWrapToken+"): nothing to run")
		os.Exit(2)
	}
}

func setup(ctx context.Context, log *slog.Logger) (*runner, error) {
	env, err := deploy.FromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	if err := env.Require(deploy.NeedTable | deploy.NeedBucket | deploy.NeedVault); err != nil {
		return nil, err
	}
	c, err := deploy.NewClients(ctx, env)
	if err != nil {
		return nil, err
	}
	store, err := c.Store(env)
	if err != nil {
		return nil, err
	}
	sink, err := c.Sink(env, env.RecordingPrefix, "application/octet-stream")
	if err != nil {
		return nil, err
	}
	r := &runner{store: store, vault: c.Vault, sink: sink, engines: engines.Table(), log: log,
		now: time.Now, uploadTimeout: 30 * time.Second}
	signer, err := recordingSigner(ctx, env, kms.NewFromConfig(c.AWS), log)
	if err != nil {
		return nil, err
	}
	if signer != nil {
		r.signer = signer
	}
	return r, nil
}

// recordingSigner is the KMS signer of JITGATE_RECORDING_SIGNING_KEY, or nil
// (with a warning) when none is configured. A configured key that cannot be
// used stops the runner: it must not record unsigned by accident.
func recordingSigner(ctx context.Context, env deploy.Env, client kmssign.API, log *slog.Logger) (*kmssign.Signer, error) {
	if env.RecordingSigningKey == "" {
		log.Warn("recordings are not signed: JITGATE_RECORDING_SIGNING_KEY is not set")
		return nil, nil
	}
	s, err := kmssign.New(ctx, kmssign.Config{Client: client, KeyID: env.RecordingSigningKey})
	if err != nil {
		return nil, fmt.Errorf("runner: recording signing key: %w", err)
	}
	log.Info("recordings are signed", "kms_key", s.KMSKey(), "key_id", record.KeyID(s.PublicKey()))
	return s, nil
}
