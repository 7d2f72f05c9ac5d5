// Command sweeper is the broker's housekeeping as a scheduled Lambda function
// (an EventBridge rule, every minute by default): it expires pending grants
// nobody approved in time and approved grants nobody used, ends active grants
// past their deadline and revokes their leases (broker.Service.Sweep), and
// stops the ECS session tasks of grants that are no longer active
// (launch/ecs.StopOrphans). The report is the function's answer and its log.
//
// With AWS_LAMBDA_RUNTIME_API set it serves scheduled events; otherwise it
// sweeps once and prints the report, for a cron job or a local trial.
//
// Configuration: functions/internal/deploy.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/launch/ecs"
	"github.com/jitgate/jitgate/functions/internal/deploy"
)

// Report is the sweeper's answer.
type Report struct {
	broker.SweepReport
	TasksStopped []ecs.Orphan `json:"tasks_stopped,omitempty"`
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("function", "sweeper")
	ctx := context.Background()
	b, err := setup(ctx, log)
	if err != nil {
		log.Error("sweeper setup failed", "err", err)
		os.Exit(1)
	}
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		lambda.Start(func(ctx context.Context, ev events.EventBridgeEvent) (Report, error) {
			if ev.Source != "" && ev.Source != "aws.events" && ev.Source != "aws.scheduler" {
				return Report{}, errors.New("sweeper: not a scheduled event (source " + ev.Source + ")")
			}
			return sweep(ctx, b, log), nil
		})
		return
	}
	rep := sweep(ctx, b, log)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
	if len(rep.Errors) > 0 {
		os.Exit(1)
	}
}

func setup(ctx context.Context, log *slog.Logger) (*deploy.Broker, error) {
	env, err := deploy.FromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	c, err := deploy.NewClients(ctx, env)
	if err != nil {
		return nil, err
	}
	return deploy.NewBroker(ctx, env, c, log)
}

func sweep(ctx context.Context, b *deploy.Broker, log *slog.Logger) Report {
	var pre []string
	if err := b.Clients.RefreshVault(ctx); err != nil {
		pre = append(pre, err.Error())
	}
	rep := Report{SweepReport: b.Service.Sweep(ctx)}
	rep.Errors = append(pre, rep.Errors...)
	if b.Sessions != nil {
		stopped, err := b.Sessions.StopOrphans(ctx, deploy.GrantLive(b.Store, time.Now))
		rep.TasksStopped = stopped
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
	}
	if err := b.Audit.Ship(context.WithoutCancel(ctx)); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	log.Info("swept", "expired", rep.Expired, "ended", rep.Ended, "revoked", rep.Revoked, "tasks_stopped", len(rep.TasksStopped), "errors", rep.Errors)
	return rep
}
