package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/jitgate/jitgate/broker/httpapi"
)

func grantFlags() []cli.Flag {
	return append(clientFlags(),
		&cli.StringFlag{Name: "target", Usage: "target name from the policy", Required: true},
		&cli.StringFlag{Name: "reason", Usage: "why you need this (shown to approvers)"},
		&cli.DurationFlag{Name: "ttl", Usage: "how long the grant lasts (capped by the rule's max_ttl)"},
		&cli.BoolFlag{Name: "wait", Usage: "wait while the grant is pending approval", Value: true},
		&cli.BoolFlag{Name: "no-wait", Usage: "do not wait for approval: print the grant's id and state as JSON and exit 0 (resume with jitgate grants wait/run ID)"},
		&cli.DurationFlag{Name: "wait-timeout", Usage: "give up waiting for approval after this long (default: the grant's own approval timeout)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
	)
}

func requestCommand() *cli.Command {
	return &cli.Command{
		Name:  "request",
		Usage: "request a grant and print it as JSON (use --no-wait style: --wait=false to return at once)",
		Flags: append(grantFlags(),
			&cli.StringFlag{Name: "sql", Usage: "exec mode: the one statement this grant covers"},
			&cli.StringFlag{Name: "access", Usage: "session mode: read, write or admin", Value: "read"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			req := httpapi.GrantRequest{Target: cmd.String("target"), SQL: cmd.String("sql"), Reason: cmd.String("reason"), TTL: durString(cmd.Duration("ttl"))}
			if req.SQL == "" {
				req.Mode, req.Access = "session", cmd.String("access")
			}
			g, err := requestAndWait(ctx, c, cmd, req)
			if g != nil {
				printJSON(os.Stdout, g)
			}
			return err
		},
	}
}

// requestAndWait files a grant request and, with --wait, waits while it is pending.
// It returns the grant and an exit error for denied (3) or timed-out (4) grants.
func requestAndWait(ctx context.Context, c *apiClient, cmd *cli.Command, req httpapi.GrantRequest) (*httpapi.GrantView, error) {
	var g httpapi.GrantView
	if _, err := c.do(ctx, "POST", "/v1/grants", req, &g); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == "denied" {
			var body struct {
				Grant httpapi.GrantView `json:"grant"`
			}
			_ = json.Unmarshal(ae.Body, &body)
			return &body.Grant, exitFor(err)
		}
		return nil, exitFor(err)
	}
	if g.State != "pending" || !cmd.Bool("wait") || cmd.Bool("no-wait") {
		return &g, nil
	}
	return waitForDecision(ctx, c, cmd, g)
}

func waitForDecision(ctx context.Context, c *apiClient, cmd *cli.Command, g httpapi.GrantView) (*httpapi.GrantView, error) {
	giveUp := time.Time{}
	if d := cmd.Duration("wait-timeout"); d > 0 {
		giveUp = time.Now().Add(d)
	} else if g.PendingUntil != nil {
		giveUp = g.PendingUntil.Add(2 * time.Second)
	}
	tty := term.IsTerminal(int(os.Stderr.Fd())) && !cmd.Bool("quiet")
	quiet := cmd.Bool("quiet")
	who := strings.Join(append(append([]string{}, g.Approvers...), g.ApproverUsers...), ", ")
	if !quiet {
		fmt.Fprintf(os.Stderr, "grant %s needs approval (rule %s, approvers: %s, quorum %d)\n", g.ID, g.Rule, who, max(g.Quorum, 1))
		fmt.Fprintf(os.Stderr, "  approve with: jitgate approve %s\n", g.ID)
	}
	start, lastLine := time.Now(), time.Time{}
	for {
		if !giveUp.IsZero() && time.Now().After(giveUp) {
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			return &g, cli.Exit(fmt.Sprintf("approval for grant %s did not come in time (resume later with: jitgate grants wait %s)", g.ID, g.ID), exitTimedOut)
		}
		var next httpapi.GrantView
		if _, err := c.do(ctx, "GET", "/v1/grants/"+g.ID+"?wait=20s", nil, &next); err != nil {
			if ctx.Err() != nil {
				return &g, cli.Exit("interrupted while waiting; resume with: jitgate grants wait "+g.ID, exitError)
			}
			return &g, exitFor(err)
		}
		g = next
		waited := time.Since(start).Round(time.Second)
		switch {
		case tty:
			left := ""
			if !giveUp.IsZero() {
				left = fmt.Sprintf(", %s left", time.Until(giveUp).Round(time.Second))
			}
			fmt.Fprintf(os.Stderr, "\r\033[K⏳ waiting for approval of %s: %d/%d approvals, %s%s", g.ID, countApprovals(g), max(g.Quorum, 1), waited, left)
		case !quiet && time.Since(lastLine) > 15*time.Second:
			fmt.Fprintf(os.Stderr, "waiting for approval of %s (%s so far)\n", g.ID, waited)
			lastLine = time.Now()
		}
		switch g.State {
		case "pending":
			continue
		case "approved":
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			if !quiet {
				fmt.Fprintf(os.Stderr, "grant %s approved by %s\n", g.ID, approvers(g))
			}
			return &g, nil
		case "denied":
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			return &g, cli.Exit(fmt.Sprintf("grant %s denied by %s", g.ID, approvers(g)), exitDenied)
		case "expired":
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			return &g, cli.Exit(fmt.Sprintf("grant %s expired before it was approved", g.ID), exitTimedOut)
		default:
			return &g, cli.Exit(fmt.Sprintf("grant %s is %s", g.ID, g.State), exitError)
		}
	}
}

func countApprovals(g httpapi.GrantView) int {
	n := 0
	for _, a := range g.Approvals {
		if a.Decision == "approve" {
			n++
		}
	}
	return n
}

func approvers(g httpapi.GrantView) string {
	var names []string
	for _, a := range g.Approvals {
		s := a.Name
		if a.Reason != "" {
			s += fmt.Sprintf(" (%q)", a.Reason)
		}
		names = append(names, s)
	}
	if len(names) == 0 {
		return "policy"
	}
	return strings.Join(names, ", ")
}

func execCommand() *cli.Command {
	return &cli.Command{
		Name:  "exec",
		Usage: "run one statement under its own grant and print the masked result",
		Description: "Exit codes: 0 ran; 1 failed (target down, proxy error); 2 bad input;\n" +
			"3 denied by policy, an approver or the guard; 4 approval timed out.",
		Flags: append(grantFlags(),
			&cli.StringFlag{Name: "sql", Usage: "the statement (postgres targets)"},
			&cli.StringFlag{Name: "command", Usage: "the shell command (ssh targets)"},
			&cli.StringFlag{Name: "http", Usage: `the request (http targets), e.g. "GET /v1/flags"`},
			&cli.StringFlag{Name: "key", Usage: `the key to read (config targets), e.g. flags/db_url, or 'flags/*'`},
			kubeExecFlag(),
			&cli.StringFlag{Name: "format", Usage: "table, json or csv", Value: "table"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			format := cmd.String("format")
			if format != "table" && format != "json" && format != "csv" {
				return usageErr("--format must be table, json or csv, not %q", format)
			}
			kubeOp, err := kubeExecOperation(cmd)
			if err != nil {
				return err
			}
			if n := btoi(cmd.String("sql") != "") + btoi(cmd.String("command") != "") + btoi(cmd.String("http") != "") + btoi(kubeOp != nil) + btoi(cmd.String("key") != ""); n != 1 {
				return usageErr("exec needs exactly one of --sql (postgres targets), --command (ssh targets), --http (http targets), --key (config targets) or --pod NS/POD[/CONTAINER] -- ARGV (kube targets)")
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			g, err := requestAndWait(ctx, c, cmd, httpapi.GrantRequest{Target: cmd.String("target"), Mode: "exec", SQL: cmd.String("sql"),
				Command: cmd.String("command"), HTTP: cmd.String("http"), Config: cmd.String("key"), Kube: kubeOp, Reason: cmd.String("reason"), TTL: durString(cmd.Duration("ttl"))})
			if err != nil {
				return err
			}
			if g.State != "approved" {
				printJSON(os.Stdout, map[string]string{"id": g.ID, "state": g.State, "resume": "jitgate grants wait " + g.ID + " && jitgate grants run " + g.ID})
				return nil
			}
			return runGrant(ctx, c, cmd, g.ID, format)
		},
	}
}

// runGrant runs an approved exec grant and prints its masked result.
func runGrant(ctx context.Context, c *apiClient, cmd *cli.Command, id, format string) error {
	var res httpapi.RunResponse
	if _, err := c.do(ctx, "POST", "/v1/grants/"+id+"/run", nil, &res); err != nil {
		return exitFor(err)
	}
	if err := printResult(os.Stdout, format, id, &res); err != nil {
		return err
	}
	if r := res.Result; r != nil && strings.HasPrefix(r.Tag, "exit ") && r.Tag != "exit 0" && format == "table" {
		return cli.Exit(fmt.Sprintf("remote command ended with %s", r.Tag), exitError)
	}
	if !cmd.Bool("quiet") && format == "table" {
		fmt.Fprintf(os.Stderr, "grant %s · recording %s\n", id, res.Recording)
	}
	return nil
}

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:      "connect",
		Usage:     "open a session grant and run a client (psql, pgbench, ...) against its proxy",
		ArgsUsage: "-- COMMAND [ARGS...]",
		Description: "PostgreSQL targets: the command runs with PGHOST, PGPORT, PGUSER, PGPASSWORD (the one-time\n" +
			"grant secret), PGDATABASE and PGSSLMODE set for the grant's proxy.\n" +
			"SSH targets: JITGATE_HOST, JITGATE_PORT, JITGATE_USER, JITGATE_KNOWN_HOSTS (a file trusting the proxy's\n" +
			"host key) and SSH_ASKPASS (answers the password prompt with the grant secret), e.g.\n" +
			"  jitgate connect --target web-1 -- sh -c 'ssh -o UserKnownHostsFile=$JITGATE_KNOWN_HOSTS -p $JITGATE_PORT $JITGATE_USER@$JITGATE_HOST uptime'\n" +
			"HTTP targets: JITGATE_URL (http://grant:secret@proxy, a reverse proxy to the target) and\n" +
			"JITGATE_PROXY (the same, for http_proxy=$JITGATE_PROXY curl http://<target address>/...).\n" +
			"Kube targets: KUBECONFIG (a temporary kubeconfig: the proxy as server, its certificate as CA, the grant\n" +
			"secret as token, the target's namespace), e.g. jitgate connect --target shop-k8s -- kubectl get pods\n" +
			"The session ends when the command exits or the grant expires.",
		Flags: append(grantFlags(),
			&cli.StringFlag{Name: "access", Usage: "read, write or admin", Value: "read"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			args := cmd.Args().Slice()
			if len(args) == 0 {
				return usageErr("connect needs a command after --, e.g. jitgate connect --target orders-db -- psql -c 'SELECT 1'")
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			g, err := requestAndWait(ctx, c, cmd, httpapi.GrantRequest{Target: cmd.String("target"), Mode: "session",
				Access: cmd.String("access"), Reason: cmd.String("reason"), TTL: durString(cmd.Duration("ttl"))})
			if err != nil {
				return err
			}
			var s httpapi.SessionResponse
			if _, err := c.do(ctx, "POST", "/v1/grants/"+g.ID+"/session", nil, &s); err != nil {
				return exitFor(err)
			}
			if !cmd.Bool("quiet") {
				fmt.Fprintf(os.Stderr, "session %s open at %s:%s until %s\n", g.ID, s.Host, s.Port, s.Expires.Local().Format(time.TimeOnly))
			}
			child := exec.CommandContext(ctx, args[0], args[1:]...)
			child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
			env, cleanup, err := sessionEnv(g.ID, &s)
			if err != nil {
				return cli.Exit(err.Error(), exitError)
			}
			defer cleanup()
			child.Env = append(os.Environ(), env...)
			runErr := child.Run()
			endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if _, err := c.do(endCtx, "POST", "/v1/grants/"+g.ID+"/end", nil, nil); err != nil {
				fmt.Fprintf(os.Stderr, "jitgate: ending session %s: %v\n", g.ID, err)
			}
			var ee *exec.ExitError
			if errors.As(runErr, &ee) {
				return cli.Exit("", ee.ExitCode())
			}
			if runErr != nil {
				return cli.Exit(fmt.Sprintf("run %s: %v", args[0], runErr), exitError)
			}
			return nil
		},
	}
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func durString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// sessionEnv is what a client needs to reach a session proxy, by target kind.
// Files it writes (askpass script, known_hosts) are removed by cleanup.
func sessionEnv(grantID string, s *httpapi.SessionResponse) ([]string, func(), error) {
	env := []string{"JITGATE_GRANT=" + grantID, "JITGATE_HOST=" + s.Host, "JITGATE_PORT=" + s.Port, "JITGATE_USER=" + s.User}
	switch {
	case s.Protocol == "kube":
		return kubeSessionEnv(grantID, s, env)
	case s.HostKey != "": // ssh
		dir, err := os.MkdirTemp("", "jitgate-ssh-")
		if err != nil {
			return nil, func() {}, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		kh := filepath.Join(dir, "known_hosts")
		hostPattern := "[" + s.Host + "]:" + s.Port
		if err := os.WriteFile(kh, []byte(hostPattern+" "+s.HostKey+"\n"), 0o600); err != nil {
			cleanup()
			return nil, func() {}, err
		}
		// The password reaches ssh through its askpass program, never argv.
		askpass := filepath.Join(dir, "askpass")
		if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$JITGATE_PASSWORD\"\n"), 0o700); err != nil {
			cleanup()
			return nil, func() {}, err
		}
		env = append(env, "JITGATE_KNOWN_HOSTS="+kh, "JITGATE_PASSWORD="+s.Password,
			"SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=jitgate:0")
		return env, cleanup, nil
	case s.Database != "": // postgres
		return append(env, "PGHOST="+s.Host, "PGPORT="+s.Port, "PGUSER="+s.User, "PGPASSWORD="+s.Password,
			"PGDATABASE="+s.Database, "PGSSLMODE="+s.SSLMode), func() {}, nil
	default: // http
		u := (&url.URL{Scheme: "http", User: url.UserPassword(s.User, s.Password), Host: net.JoinHostPort(s.Host, s.Port)}).String()
		// JITGATE_URL is the reverse-proxy base; JITGATE_PROXY is the same
		// address for http_proxy-style use (not set as http_proxy itself: a
		// client would then send JITGATE_URL requests through it as well).
		return append(env, "JITGATE_URL="+u, "JITGATE_PROXY="+u), func() {}, nil
	}
}
