package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/ephemeral/engines"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// proxyCommand is the hidden entry point the local launcher starts: the grant
// spec arrives on stdin (never argv or env), status lines leave on stdout. The
// flags carry only paths: the recording signing key file and the directory the
// finished recording is stored in.
func proxyCommand() *cli.Command {
	return &cli.Command{
		Name:   "__proxy",
		Hidden: true,
		Usage:  "ephemeral proxy for one grant (started by the broker; spec on stdin)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "signing-key", Usage: "Ed25519 key file that signs the recording (PKCS#8 PEM, mode 0600)"},
			&cli.StringFlag{Name: "sink", Usage: "directory the finished recording is stored in (the spec's record dir is the spool)"},
			&cli.DurationFlag{Name: "upload-timeout", Value: 30 * time.Second, Usage: "how long to retry the upload before leaving the recording spooled"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn, error (the broker passes its own)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			raw, err := io.ReadAll(io.LimitReader(os.Stdin, 8<<20))
			if err != nil {
				return cli.Exit("read spec: "+err.Error(), exitError)
			}
			if len(raw) == 0 {
				// A spare proxy released by its launcher: it never got a spec.
				return nil
			}
			var g spec.Grant
			if err := json.Unmarshal(raw, &g); err != nil {
				return cli.Exit("decode spec: "+err.Error(), exitUsage)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(cmd.String("log-level"))); err != nil {
				return cli.Exit(fmt.Sprintf("--log-level: %v", err), exitUsage)
			}
			// Every line names the grant: the broker interleaves all its
			// proxies' stderr with its own.
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("proxy", g.ID)
			session.Version = buildVersion()
			cfg := session.Config{Grant: &g, Engines: engines.Table(), Status: os.Stdout, Logger: log,
				Upload: record.Uploader{Timeout: cmd.Duration("upload-timeout")}}
			// A recording that cannot be signed or stored as configured refuses
			// the grant before anything runs.
			if p := cmd.String("signing-key"); p != "" {
				key, err := sign.LoadKeyFile(p)
				if err != nil {
					return refuse(g.ID, err)
				}
				cfg.Signer = key
			}
			if d := cmd.String("sink"); d != "" {
				sink, err := filesink.New(filesink.Config{Dir: d})
				if err != nil {
					return refuse(g.ID, err)
				}
				cfg.Sink = sink
			}
			if err := session.Run(ctx, cfg); err != nil {
				return cli.Exit("", exitError)
			}
			return nil
		},
	}
}

// refuse reports a recording setup failure on the status channel and exits.
func refuse(grantID string, err error) error {
	_ = json.NewEncoder(os.Stdout).Encode(spec.Status{Type: spec.StatusError, GrantID: grantID, Time: time.Now().UTC(),
		Code: spec.CodeRecording, Error: "recording setup: " + err.Error()})
	return cli.Exit("", exitError)
}

// buildVersion is the module version of this binary, stamped into recordings.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}
