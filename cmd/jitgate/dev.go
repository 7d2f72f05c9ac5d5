package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

// devAudience is the audience of tokens from the embedded dev issuer.
const devAudience = "jitgate"

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run the whole local stack: broker, embedded DEV-ONLY OIDC issuer, bbolt store, local proxies",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "policy", Usage: "policy YAML file (required)", Sources: cli.EnvVars("JITGATE_POLICY")},
			&cli.StringFlag{Name: "listen", Usage: "broker address (loopback only in dev)", Value: "127.0.0.1:8700"},
			&cli.StringFlag{Name: "data-dir", Usage: "grants, audit log and recordings", Value: ".jitgate-dev", Sources: cli.EnvVars("JITGATE_DATA_DIR")},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn, error"},
			metricsListenFlag(),
		},
		Commands: []*cli.Command{devTokenCommand()},
		Action:   runDev,
	}
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func runDev(ctx context.Context, cmd *cli.Command) error {
	if cmd.String("policy") == "" {
		return usageErr("jitgate dev needs --policy FILE (or JITGATE_POLICY)")
	}
	log, err := newLogger(cmd.String("log-level"))
	if err != nil {
		return err
	}
	addr := cmd.String("listen")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErr("--listen %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageErr("--listen %q: jitgate dev listens on loopback only (its issuer mints tokens for anyone who asks)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return cli.Exit(fmt.Sprintf("listen %s: %v", addr, err), exitError)
	}
	base := "http://" + ln.Addr().String()
	iss, err := devissuer.New(devissuer.Options{Logger: log})
	if err != nil {
		ln.Close()
		return cli.Exit(err.Error(), exitError)
	}
	iss.SetURL(base + "/dev/oidc")
	st, err := buildStack(stackConfig{
		PolicyPath: cmd.String("policy"), DataDir: cmd.String("data-dir"), Logger: log, DevLoopback: true, ApproveURL: base + "/ui",
		ProxyMetrics: cmd.String("metrics-listen") != "", ProxyLogLevel: cmd.String("log-level"),
		ExtraIssuers: []identity.IssuerConfig{{Name: "dev", Issuer: iss.URL(), Audience: devAudience, GroupsClaim: "groups", DevOnly: true}},
	})
	if err != nil {
		ln.Close()
		return err
	}
	defer st.Close()
	ui, err := st.approvalUI(iss.URL(), devAudience, base+"/ui")
	if err != nil {
		return err
	}
	if err := st.serveMetrics(ctx, cmd.String("metrics-listen")); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", iss.Handler()))
	mux.Handle("/ui/", ui)
	mux.Handle("/", st.handler)
	go st.svc.RunSweeper(ctx, 2*time.Second)
	log.Warn("DEV ONLY: the embedded OIDC issuer mints tokens for anyone on this machine; never expose jitgate dev", "issuer", iss.URL())
	fmt.Fprintf(os.Stderr, "jitgate dev: broker listening on %s (data in %s)\n", base, cmd.String("data-dir"))
	fmt.Fprintf(os.Stderr, "  export JITGATE_BROKER=%s\n", base)
	fmt.Fprintf(os.Stderr, "  export JITGATE_TOKEN=$(jitgate dev token --sub agent-1 --groups ai-agents)\n")
	fmt.Fprintf(os.Stderr, "  approval page: %s/ui/ (sign in through the DEV ONLY issuer, e.g. as alice in group dba)\n", base)
	return serve(ctx, ln, mux)
}

func devTokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "print a token from the running dev issuer (DEV ONLY)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "broker", Value: "http://127.0.0.1:8700", Sources: cli.EnvVars("JITGATE_BROKER")},
			&cli.StringFlag{Name: "sub", Usage: "subject", Required: true},
			&cli.StringFlag{Name: "groups", Usage: "comma-separated groups"},
			&cli.StringSliceFlag{Name: "claim", Usage: "extra claim k=v (repeatable)"},
			&cli.StringFlag{Name: "aud", Value: devAudience, Usage: "audience"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			form := url.Values{"sub": {cmd.String("sub")}, "groups": {cmd.String("groups")}, "aud": {cmd.String("aud")}}
			for _, c := range cmd.StringSlice("claim") {
				if !strings.Contains(c, "=") {
					return usageErr("--claim %q: want key=value", c)
				}
				form.Add("claim", c)
			}
			u := strings.TrimRight(cmd.String("broker"), "/") + "/dev/oidc/token"
			resp, err := http.PostForm(u, form)
			if err != nil {
				return cli.Exit(fmt.Sprintf("cannot reach jitgate dev at %s: %v (start it with: jitgate dev --policy FILE)", u, err), exitError)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != 200 {
				return cli.Exit(fmt.Sprintf("dev issuer answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body))), exitError)
			}
			var out struct {
				IDToken string `json:"id_token"`
			}
			if err := json.Unmarshal(body, &out); err != nil || out.IDToken == "" {
				return cli.Exit("dev issuer answered without a token", exitError)
			}
			fmt.Println(out.IDToken)
			return nil
		},
	}
}

func brokerCommand() *cli.Command {
	return &cli.Command{
		Name:  "broker",
		Usage: "run the broker",
		Commands: []*cli.Command{{
			Name:  "serve",
			Usage: "serve the broker API (production: issuers from the policy only, no dev issuer)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "policy", Required: true, Sources: cli.EnvVars("JITGATE_POLICY")},
				&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8700", Sources: cli.EnvVars("JITGATE_LISTEN")},
				dataDirFlag(),
				&cli.StringFlag{Name: "log-level", Value: "info"},
				metricsListenFlag(),
				// Pacing of the background loops; tests shorten them.
				&cli.DurationFlag{Name: "sweep-every", Value: 5 * time.Second, Hidden: true},
				&cli.DurationFlag{Name: "spool-flush-every", Value: 30 * time.Second, Hidden: true},
				&cli.DurationFlag{Name: "spool-flush-age", Value: 2 * time.Minute, Hidden: true, Usage: "leave spooled recordings younger than this to their proxy"},
				&cli.DurationFlag{Name: "run-timeout", Value: 2 * time.Minute, Hidden: true, Usage: "bound of one exec run; grace past a deadline before the sweeper ends an orphaned grant"},
				&cli.StringFlag{Name: "ui-client-id", Usage: "serve the approval page at /ui/, signing approvers in as this OIDC client (authorization code + PKCE)", Sources: cli.EnvVars("JITGATE_UI_CLIENT_ID")},
				&cli.StringFlag{Name: "ui-issuer", Usage: "issuer URL approvers sign in with (default: the policy issuer whose audience is --ui-client-id)"},
				&cli.StringFlag{Name: "ui-base-url", Usage: "external URL of the approval page, e.g. https://jitgate.example.com/ui (default http://LISTEN/ui, loopback only)", Sources: cli.EnvVars("JITGATE_UI_BASE_URL")},
			},
			Action: func(ctx context.Context, cmd *cli.Command) error {
				log, err := newLogger(cmd.String("log-level"))
				if err != nil {
					return err
				}
				st, err := buildStack(stackConfig{PolicyPath: cmd.String("policy"), DataDir: cmd.String("data-dir"), Logger: log,
					ProxyMetrics: cmd.String("metrics-listen") != "", ProxyLogLevel: cmd.String("log-level"),
					FlushEvery: cmd.Duration("spool-flush-every"), FlushAge: cmd.Duration("spool-flush-age"), RunTimeout: cmd.Duration("run-timeout")})
				if err != nil {
					return err
				}
				defer st.Close()
				ln, err := net.Listen("tcp", cmd.String("listen"))
				if err != nil {
					return cli.Exit(err.Error(), exitError)
				}
				h := st.handler
				if id := cmd.String("ui-client-id"); id != "" {
					base := cmd.String("ui-base-url")
					if base == "" {
						if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
							ln.Close()
							return usageErr("--ui-base-url is required when the broker listens on %s (not loopback)", ln.Addr())
						}
						base = "http://" + ln.Addr().String() + "/ui"
					}
					ui, err := st.approvalUI(cmd.String("ui-issuer"), id, base)
					if err != nil {
						ln.Close()
						return err
					}
					prefix := strings.TrimSuffix(mustPath(base), "/")
					if prefix == "" {
						ln.Close()
						return usageErr("--ui-base-url %q needs a path such as /ui: the API is served at /", base)
					}
					mux := http.NewServeMux()
					mux.Handle(prefix+"/", ui)
					mux.Handle("/", st.handler)
					h = mux
					log.Info("approval page", "url", base+"/")
				}
				if err := st.serveMetrics(ctx, cmd.String("metrics-listen")); err != nil {
					ln.Close()
					return err
				}
				go st.svc.RunSweeper(ctx, cmd.Duration("sweep-every"))
				log.Info("broker listening", "addr", ln.Addr().String())
				return serve(ctx, ln, h)
			},
		}},
	}
}

// metricsListenFlag turns on Prometheus metrics on a separate listener.
func metricsListenFlag() cli.Flag {
	return &cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at http://ADDR/metrics on their own listener, e.g. 127.0.0.1:9464 (off by default; unauthenticated: keep it on loopback or a private interface); session proxies then serve theirs on loopback ports named in session.started", Sources: cli.EnvVars("JITGATE_METRICS_LISTEN")}
}

// mustPath returns the path of an URL approvalui.New has accepted.
func mustPath(u string) string {
	p, _ := url.Parse(u)
	return p.Path
}
