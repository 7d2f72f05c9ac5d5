// Command api is the broker's HTTP API as a Lambda function, behind a Lambda
// Function URL or an API Gateway HTTP API (payload format 2.0): the same
// broker/httpapi handler as `jitgate broker serve`, over the DynamoDB grant
// store, launching exec grants in the runner function and session grants as
// ECS tasks. Each invocation's audit events are shipped to S3 before it
// answers.
//
// main decides where it runs: with AWS_LAMBDA_RUNTIME_API set (Lambda, or the
// Runtime Interface Emulator) it serves Lambda events; otherwise it serves
// plain HTTP on JITGATE_LISTEN (default 127.0.0.1:8080) against the same AWS
// resources, for a local trial against LocalStack or moto.
//
// Configuration: functions/internal/deploy.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/jitgate/jitgate/functions/internal/deploy"
	"github.com/jitgate/jitgate/functions/internal/lambdahttp"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("function", "api")
	if err := run(log); err != nil {
		log.Error("api failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx := context.Background()
	env, err := deploy.FromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c, err := deploy.NewClients(ctx, env)
	if err != nil {
		return err
	}
	b, err := deploy.NewBroker(ctx, env, c, log)
	if err != nil {
		return err
	}
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		h := lambdahttp.Handler(b.Handler, lambdahttp.Options{})
		lambda.Start(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			if err := b.Clients.RefreshVault(ctx); err != nil {
				log.Error("vault login failed; requests that need Vault will fail", "err", err)
			}
			resp, err := h(ctx, ev)
			if serr := b.Audit.Ship(context.WithoutCancel(ctx)); serr != nil {
				// The decision is already stored; the evidence of it must not
				// vanish quietly.
				log.Error("audit log not shipped; it stays in this environment and is retried after the next invocation", "err", serr)
			}
			return resp, err
		})
		return nil
	}
	return serveLocal(env, b, log)
}

func serveLocal(env deploy.Env, b *deploy.Broker, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", env.Listen)
	if err != nil {
		return err
	}
	log.Info("serving the broker API outside Lambda", "addr", ln.Addr().String())
	srv := &http.Server{Handler: b.Handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ship := time.NewTicker(10 * time.Second)
	defer ship.Stop()
	for {
		select {
		case <-ship.C:
			if err := b.Audit.Ship(ctx); err != nil {
				log.Error("audit log not shipped", "err", err)
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			b.Service.Close()
			if err := b.Audit.Ship(sctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("audit log not shipped", "err", err)
			}
			return nil
		}
	}
}
