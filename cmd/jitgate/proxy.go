package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// proxyCommand is the hidden entry point the local launcher starts: the grant
// spec arrives on stdin (never argv or env), status lines leave on stdout.
func proxyCommand() *cli.Command {
	return &cli.Command{
		Name:   "__proxy",
		Hidden: true,
		Usage:  "ephemeral proxy for one grant (started by the broker; spec on stdin)",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			raw, err := io.ReadAll(io.LimitReader(os.Stdin, 8<<20))
			if err != nil {
				return cli.Exit("read spec: "+err.Error(), exitError)
			}
			var g spec.Grant
			if err := json.Unmarshal(raw, &g); err != nil {
				return cli.Exit("decode spec: "+err.Error(), exitUsage)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("proxy", g.ID)
			if err := session.Run(ctx, session.Config{Grant: &g, Engines: engines(), Status: os.Stdout, Logger: log}); err != nil {
				return cli.Exit("", exitError)
			}
			return nil
		},
	}
}
