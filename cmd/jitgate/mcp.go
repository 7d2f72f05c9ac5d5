package main

// `jitgate mcp`: an MCP (Model Context Protocol) server for AI assistants.
// Every tool call that touches a target is its own exec-mode grant filed with
// the broker, exactly as `jitgate exec` files one: policy decides, a human
// approves when the rule says so, an ephemeral proxy runs the one operation with
// a per-grant credential, masks the result and records it. The model sees the
// masked result and the recording id, never a credential. A denial, a block or
// a pending approval comes back as a structured tool result the model can act
// on, never as a protocol error or a hang.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/urfave/cli/v3"
	"golang.org/x/oauth2"
	"mvdan.cc/sh/v3/syntax"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/httpapi"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// defaultApprovalWait is how long a tool call waits for a human approval before
// it returns {"state":"pending"} so the model can call grant_status later.
const defaultApprovalWait = 2 * time.Minute

func mcpCommand() *cli.Command {
	return &cli.Command{
		Name:  "mcp",
		Usage: "serve MCP tools to an AI assistant (stdio, or streamable HTTP with --http); every call is its own grant",
		Description: "Tools: list_targets, sql_query, grant_status, ssh_exec, kubectl_exec, http_request, read_config.\n" +
			"Each call that touches a target files an exec grant with the broker; results come back masked,\n" +
			"with the grant id and recording. Denials and pending approvals are structured tool results.\n\n" +
			"Token: --token/JITGATE_TOKEN, --token-file (re-read on every call), the GitHub Actions job token,\n" +
			"or device-code login with --issuer and --client-id (for a human-driven assistant).\n" +
			"See docs/mcp.md for client configuration snippets.",
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "http", Usage: "serve streamable HTTP on this loopback address (e.g. 127.0.0.1:8765) instead of stdio"},
			&cli.StringFlag{Name: "policy", Usage: "policy file for list_targets (computed offline with the broker's own decision code)", Sources: cli.EnvVars("JITGATE_POLICY")},
			&cli.DurationFlag{Name: "approval-wait", Usage: "how long a tool call waits for an approval before returning state pending", Value: defaultApprovalWait},
			&cli.StringFlag{Name: "approve-url", Usage: "base URL of the approval page; links are BASE/grants/GRANT_ID (jitgate dev: BROKER/ui)", Sources: cli.EnvVars("JITGATE_APPROVE_URL")},
			&cli.StringFlag{Name: "issuer", Usage: "device-code login: OIDC issuer URL (used when no token is given)", Sources: cli.EnvVars("JITGATE_ISSUER")},
			&cli.StringFlag{Name: "client-id", Usage: "device-code login: OAuth client id registered for device authorization", Sources: cli.EnvVars("JITGATE_CLIENT_ID")},
			&cli.StringFlag{Name: "scopes", Usage: "device-code login: space-separated scopes", Value: "openid profile groups offline_access"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn, error (logs go to stderr)"},
		),
		Action: runMCP,
	}
}

func runMCP(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd.String("log-level"))
	if err != nil {
		return err
	}
	base := strings.TrimRight(cmd.String("broker"), "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErr("--broker %q is not an http(s) URL", base)
	}
	wait := cmd.Duration("approval-wait")
	if wait < 0 {
		return usageErr("--approval-wait must not be negative")
	}
	var pol *policy.Policy
	if f := cmd.String("policy"); f != "" {
		if pol, err = policy.Load(f); err != nil {
			return usageErr("%v", err)
		}
	}
	tokens, err := mcpTokenSource(ctx, cmd, log)
	if err != nil {
		return err
	}
	srv, err := newMCPServer(mcpConfig{
		Broker: base, HTTP: &http.Client{Timeout: 15 * time.Minute}, Tokens: tokens, Policy: pol,
		ApprovalWait: wait, ApproveURL: strings.TrimRight(cmd.String("approve-url"), "/"), Logger: log,
	})
	if err != nil {
		return cli.Exit(err.Error(), exitError)
	}
	addr := cmd.String("http")
	if addr == "" {
		if err := srv.Run(ctx, &mcp.StdioTransport{}); err != nil && ctx.Err() == nil {
			return cli.Exit("mcp: "+err.Error(), exitError)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErr("--http %q: %v", addr, err)
	}
	// The server acts with its token for whoever reaches it: never off the machine.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageErr("--http %q: jitgate mcp listens on loopback only (every caller acts with its token)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return cli.Exit(fmt.Sprintf("listen %s: %v", addr, err), exitError)
	}
	fmt.Fprintf(os.Stderr, "jitgate mcp: streamable HTTP at http://%s/mcp\n", ln.Addr())
	return serve(ctx, ln, mcpHTTPHandler(srv, log))
}

// mcpHTTPHandler serves the streamable HTTP transport at /mcp. The SDK refuses
// requests whose Host is not localhost (DNS rebinding); cross-origin browser
// requests are refused as well.
func mcpHTTPHandler(srv *mcp.Server, log *slog.Logger) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/mcp", http.NewCrossOriginProtection().Handler(h))
	return mux
}

// mcpConfig configures the MCP tools.
type mcpConfig struct {
	// Broker is the broker's base URL.
	Broker string
	// HTTP talks to the broker. Its timeout must exceed a run.
	HTTP *http.Client
	// Tokens yields the caller's OIDC token for each call.
	Tokens tokenSource
	// Policy, when set, lets list_targets answer offline and refuses tools
	// whose kind does not match the target's before anything is filed.
	Policy *policy.Policy
	// ApprovalWait bounds how long one call waits for an approval (0: not at all).
	ApprovalWait time.Duration
	// ApproveURL is the base of approval page links (BASE/grants/ID); optional.
	ApproveURL string
	Logger     *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *mcpConfig) validate() error {
	if c.Broker == "" || c.Tokens == nil {
		return errors.New("mcp: Broker and Tokens are required")
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 15 * time.Minute}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

type mcpTools struct{ cfg mcpConfig }

// Tool names, in the order tools/list shows them.
const (
	toolListTargets = "list_targets"
	toolSQLQuery    = "sql_query"
	toolGrantStatus = "grant_status"
	toolSSHExec     = "ssh_exec"
	toolKubectlExec = "kubectl_exec"
	toolHTTPRequest = "http_request"
	toolReadConfig  = "read_config"
)

func newMCPServer(cfg mcpConfig) (*mcp.Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &mcpTools{cfg: cfg}
	srv := mcp.NewServer(&mcp.Implementation{Name: "jitgate", Title: "jitgate just-in-time access", Version: "1"}, &mcp.ServerOptions{
		Logger: cfg.Logger,
		Instructions: "jitgate runs each operation under its own short-lived grant: policy decides, a human may have to approve, " +
			"results are masked and recorded. Start with list_targets. A result's state tells you what happened: ok, denied, blocked, " +
			"pending (call grant_status later with the grant_id; do not file the same request again), expired, failed, unsupported. " +
			"Never try to work around a denial or a block by rephrasing the operation; tell the user the reason.",
	})
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}
	mcp.AddTool(srv, &mcp.Tool{Name: toolListTargets, Title: "List targets",
		Description: "Targets this identity may ask for, and at which access (allow, or approve: needs a human). Call this first.",
		Annotations: readOnly}, t.listTargets)
	mcp.AddTool(srv, &mcp.Tool{Name: toolSQLQuery, Title: "Run one SQL statement",
		Description: "Run one SQL statement on a postgres target under its own grant. Read statements on allowed targets run at once; " +
			"writes may need a human approval (the call waits a while, then returns state pending with a grant_id). " +
			"Sensitive values come back masked. The statement is parsed with PostgreSQL's parser; unparseable or forbidden statements are denied."},
		t.sqlQuery)
	mcp.AddTool(srv, &mcp.Tool{Name: toolGrantStatus, Title: "Grant status",
		Description: "State of a grant filed earlier (e.g. one that was pending approval). If it has been approved and has not run yet, " +
			"it runs now (unless run is false) and the masked result comes back."}, t.grantStatus)
	mcp.AddTool(srv, &mcp.Tool{Name: toolSSHExec, Title: "Run one shell command over SSH",
		Description: "Run one shell command on an ssh target under its own grant; output comes back masked. The command line is parsed, " +
			"and policy may refuse commands (rm, shells fed from pipes, ...)."}, t.sshExec)
	mcp.AddTool(srv, &mcp.Tool{Name: toolKubectlExec, Title: "Run one command in a pod",
		Description: "Run one command in a Kubernetes pod (kubectl exec) on a kube target under its own grant; output comes back masked."},
		t.kubectlExec)
	mcp.AddTool(srv, &mcp.Tool{Name: toolHTTPRequest, Title: "Send one HTTP request",
		Description: "Send one HTTP request to an http target under its own grant; the proxy adds the credential, the response comes back masked."},
		t.httpRequest)
	mcp.AddTool(srv, &mcp.Tool{Name: toolReadConfig, Title: "Read a configuration file",
		Description: "Read configuration under its own grant: keys of a config target (key: flags/db_url, or flags/* for every key of one secret), " +
			"or one file on an ssh target (path: an absolute path). Secret-looking values come back masked."},
		t.readConfig)
	return srv, nil
}

func ptr[T any](v T) *T { return &v }

// Tool inputs. Fields without omitempty are required by the inferred schema.

type sqlQueryIn struct {
	Target  string `json:"target" jsonschema:"a postgres target name from list_targets"`
	SQL     string `json:"sql" jsonschema:"exactly the statement to run"`
	Reason  string `json:"reason" jsonschema:"why you need this; approvers read it and the audit log keeps it"`
	MaxRows int    `json:"max_rows,omitempty" jsonschema:"return at most this many rows (default 200, at most 5000)"`
}

type grantStatusIn struct {
	GrantID string `json:"grant_id" jsonschema:"the grant id from an earlier result"`
	Wait    bool   `json:"wait,omitempty" jsonschema:"while the grant is pending, wait for the decision (up to the server's approval wait)"`
	Run     *bool  `json:"run,omitempty" jsonschema:"run an approved grant that has not run yet and return its result (default true)"`
	MaxRows int    `json:"max_rows,omitempty" jsonschema:"return at most this many rows (default 200, at most 5000)"`
}

type sshExecIn struct {
	Target  string `json:"target" jsonschema:"an ssh target name from list_targets"`
	Command string `json:"command" jsonschema:"one shell command line"`
	Reason  string `json:"reason" jsonschema:"why you need this; approvers read it and the audit log keeps it"`
}

type kubectlExecIn struct {
	Target    string   `json:"target" jsonschema:"a kube target name from list_targets"`
	Namespace string   `json:"namespace" jsonschema:"the pod's namespace"`
	Pod       string   `json:"pod" jsonschema:"the pod name"`
	Container string   `json:"container,omitempty" jsonschema:"the container (default: the pod's default container)"`
	Command   []string `json:"command" jsonschema:"the command and its arguments, one array element each"`
	Reason    string   `json:"reason" jsonschema:"why you need this; approvers read it and the audit log keeps it"`
}

type httpRequestIn struct {
	Target      string `json:"target" jsonschema:"an http target name from list_targets"`
	Method      string `json:"method" jsonschema:"GET, HEAD, POST, PUT, PATCH or DELETE"`
	Path        string `json:"path" jsonschema:"path and query, starting with /"`
	Body        string `json:"body,omitempty" jsonschema:"request body"`
	ContentType string `json:"content_type,omitempty" jsonschema:"Content-Type of the body (default application/json when the body is JSON, else text/plain)"`
	Reason      string `json:"reason" jsonschema:"why you need this; approvers read it and the audit log keeps it"`
}

type readConfigIn struct {
	Target string `json:"target" jsonschema:"a config target (or an ssh target) name from list_targets"`
	Key    string `json:"key,omitempty" jsonschema:"config targets: the key to read, e.g. flags/db_url, or all keys of one secret, flags/*"`
	Path   string `json:"path,omitempty" jsonschema:"ssh targets: absolute path of the file"`
	Reason string `json:"reason" jsonschema:"why you need this; approvers read it and the audit log keeps it"`
}

// outcome is every target tool's result. State says what happened; Message
// says it in words and Next says what the model can do about it.
type outcome struct {
	State      string          `json:"state" jsonschema:"ok, denied, blocked, pending, approved, active, ended, expired, revoked, failed, unsupported, bad_request, forbidden, not_found, unauthenticated, login_required, unreachable"`
	Message    string          `json:"message" jsonschema:"what happened, in words"`
	Next       string          `json:"next,omitempty" jsonschema:"what you can do next"`
	GrantID    string          `json:"grant_id,omitempty"`
	Target     string          `json:"target,omitempty"`
	Access     string          `json:"access,omitempty"`
	Rule       string          `json:"rule,omitempty" jsonschema:"the policy rule that decided"`
	Reasons    []string        `json:"reasons,omitempty" jsonschema:"why, most relevant first"`
	Statements []statementJSON `json:"statements,omitempty" jsonschema:"how the broker classified the SQL"`
	Approval   *approvalInfo   `json:"approval,omitempty" jsonschema:"who must approve and how"`
	Columns    []string        `json:"columns,omitempty"`
	Rows       [][]*string     `json:"rows,omitempty" jsonschema:"masked rows; null is SQL NULL"`
	RowCount   int             `json:"row_count,omitempty" jsonschema:"rows the statement returned (more than rows when truncated)"`
	Truncated  bool            `json:"truncated,omitempty"`
	Tag        string          `json:"tag,omitempty" jsonschema:"command tag, e.g. SELECT 3 or INSERT 0 1"`
	Notices    []string        `json:"notices,omitempty"`
	Output     string          `json:"output,omitempty" jsonschema:"masked output of a command or HTTP request"`
	Recording  string          `json:"recording,omitempty" jsonschema:"where the session recording is stored"`
	Login      *loginInfo      `json:"login,omitempty" jsonschema:"set when a human must sign in first"`
}

type approvalInfo struct {
	Groups       []string   `json:"approver_groups,omitempty"`
	Users        []string   `json:"approver_users,omitempty"`
	Quorum       int        `json:"quorum"`
	Approvals    int        `json:"approvals"`
	PendingUntil *time.Time `json:"pending_until,omitempty"`
	Command      string     `json:"approve_command" jsonschema:"what an approver runs"`
	URL          string     `json:"approve_url,omitempty" jsonschema:"the approval page"`
}

type loginInfo struct {
	VerificationURI         string     `json:"verification_uri"`
	VerificationURIComplete string     `json:"verification_uri_complete,omitempty"`
	UserCode                string     `json:"user_code"`
	Expires                 *time.Time `json:"expires_at,omitempty"`
}

const (
	defaultMaxRows = 200
	maxMaxRows     = 5000
	maxOutputBytes = 256 << 10
)

// result wraps an outcome: anything but success (or a legitimately waiting
// grant) is flagged as a tool error so clients show it, with the structured
// outcome still attached.
func result(o outcome) (*mcp.CallToolResult, outcome, error) {
	switch o.State {
	case "ok", "pending", "approved", "active", "ended":
		return nil, o, nil
	}
	return &mcp.CallToolResult{IsError: true}, o, nil
}

// client returns a broker client with the caller's current token, or the
// outcome to return when there is none.
func (t *mcpTools) client(ctx context.Context) (*apiClient, *outcome) {
	tok, err := t.cfg.Tokens.Token(ctx)
	if err != nil {
		var le *loginRequiredError
		if errors.As(err, &le) {
			return nil, &outcome{State: "login_required", Login: &le.info,
				Message: fmt.Sprintf("a human must sign in first: open %s and enter the code %s", le.info.VerificationURI, le.info.UserCode),
				Next:    "show the user the link and code, wait until they have signed in, then call the tool again"}
		}
		return nil, &outcome{State: "unauthenticated", Message: "no token for the broker: " + err.Error(),
			Next: "ask the user to fix the token configured for jitgate mcp (JITGATE_TOKEN, --token-file or device login)"}
	}
	return &apiClient{base: t.cfg.Broker, token: tok, http: t.cfg.HTTP}, nil
}

// operationRequest is the grant request body for kube exec grants.
// The broker's API takes SQL and shell commands only today; it refuses these
// fields, which the tools report as unsupported. Kind names the tool's target
// kind so a broker can refuse an operation aimed at a target of another kind.
type operationRequest struct {
	Target    string `json:"target"`
	Mode      string `json:"mode"`
	Kind      string `json:"kind"`
	Operation string `json:"operation"`
	Reason    string `json:"reason,omitempty"`
}

func (t *mcpTools) sqlQuery(ctx context.Context, req *mcp.CallToolRequest, in sqlQueryIn) (*mcp.CallToolResult, outcome, error) {
	if strings.TrimSpace(in.SQL) == "" {
		return result(outcome{State: "bad_request", Message: "sql is empty", Next: "pass the statement to run"})
	}
	if o := t.checkKind(in.Target, spec.Postgres, toolSQLQuery); o != nil {
		return result(*o)
	}
	body := httpapi.GrantRequest{Target: in.Target, Mode: "exec", SQL: in.SQL, Reason: in.Reason}
	return result(t.execGrant(ctx, req, body, spec.Postgres, in.MaxRows))
}

func (t *mcpTools) sshExec(ctx context.Context, req *mcp.CallToolRequest, in sshExecIn) (*mcp.CallToolResult, outcome, error) {
	if strings.TrimSpace(in.Command) == "" {
		return result(outcome{State: "bad_request", Message: "command is empty"})
	}
	return t.shellCommand(ctx, req, in.Target, toolSSHExec, in.Command, in.Reason)
}

func (t *mcpTools) readConfig(ctx context.Context, req *mcp.CallToolRequest, in readConfigIn) (*mcp.CallToolResult, outcome, error) {
	switch {
	case in.Key != "" && in.Path != "":
		return result(outcome{State: "bad_request", Message: "give key (config targets) or path (ssh targets), not both"})
	case in.Key != "":
		if strings.ContainsAny(in.Key, "\r\n\x00") {
			return result(outcome{State: "bad_request", Message: "key must be one line"})
		}
		if o := t.checkKind(in.Target, spec.Config, toolReadConfig); o != nil {
			return result(*o)
		}
		body := httpapi.GrantRequest{Target: in.Target, Mode: "exec", Config: in.Key, Reason: in.Reason}
		return result(t.execGrant(ctx, req, body, spec.Config, 0))
	case in.Path == "":
		return result(outcome{State: "bad_request", Message: "give key (config targets) or path (ssh targets)"})
	}
	if !strings.HasPrefix(in.Path, "/") || strings.ContainsAny(in.Path, "\x00\n") {
		return result(outcome{State: "bad_request", Message: fmt.Sprintf("path %q: want an absolute path on one line", in.Path)})
	}
	quoted, err := syntax.Quote(in.Path, syntax.LangPOSIX)
	if err != nil {
		return result(outcome{State: "bad_request", Message: fmt.Sprintf("path %q cannot be quoted for a shell: %v", in.Path, err)})
	}
	return t.shellCommand(ctx, req, in.Target, toolReadConfig, "cat -- "+quoted, in.Reason)
}

// shellCommand files an exec grant for one command on an ssh target.
func (t *mcpTools) shellCommand(ctx context.Context, req *mcp.CallToolRequest, target, tool, command, reason string) (*mcp.CallToolResult, outcome, error) {
	if o := t.checkKind(target, spec.SSH, tool); o != nil {
		return result(*o)
	}
	body := httpapi.GrantRequest{Target: target, Mode: "exec", Command: command, Reason: reason}
	return result(t.execGrant(ctx, req, body, spec.SSH, 0))
}

func (t *mcpTools) kubectlExec(ctx context.Context, req *mcp.CallToolRequest, in kubectlExecIn) (*mcp.CallToolResult, outcome, error) {
	if in.Namespace == "" || in.Pod == "" || len(in.Command) == 0 || in.Command[0] == "" {
		return result(outcome{State: "bad_request", Message: "namespace, pod and a non-empty command are required"})
	}
	if o := t.checkKind(in.Target, spec.Kube, toolKubectlExec); o != nil {
		return result(*o)
	}
	op := &broker.KubeOperation{Namespace: in.Namespace, Pod: in.Pod, Container: in.Container, Command: in.Command}
	body := httpapi.GrantRequest{Target: in.Target, Mode: "exec", Kube: op, Reason: in.Reason}
	return result(t.execGrant(ctx, req, body, spec.Kube, 0))
}

func (t *mcpTools) httpRequest(ctx context.Context, req *mcp.CallToolRequest, in httpRequestIn) (*mcp.CallToolResult, outcome, error) {
	op, o := httpOperation(in)
	if o != nil {
		return result(*o)
	}
	if o := t.checkKind(in.Target, spec.HTTP, toolHTTPRequest); o != nil {
		return result(*o)
	}
	body := httpapi.GrantRequest{Target: in.Target, Mode: "exec", HTTP: op, Reason: in.Reason}
	return result(t.execGrant(ctx, req, body, spec.HTTP, 0))
}

// httpOperation writes the tool's request as the broker's http operation:
// "METHOD /path", a Content-Type line when there is a body, a blank line and
// the body (see httprule.ParseOperation).
func httpOperation(in httpRequestIn) (string, *outcome) {
	method := strings.ToUpper(in.Method)
	if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, method) {
		return "", &outcome{State: "bad_request", Message: fmt.Sprintf("method %q: want GET, HEAD, POST, PUT, PATCH or DELETE", in.Method)}
	}
	if !strings.HasPrefix(in.Path, "/") || strings.HasPrefix(in.Path, "//") || strings.ContainsAny(in.Path, " \t\r\n\x00") {
		return "", &outcome{State: "bad_request", Message: fmt.Sprintf("path %q: want a path starting with one / and no spaces", in.Path)}
	}
	if strings.ContainsAny(in.ContentType, "\r\n\x00") {
		return "", &outcome{State: "bad_request", Message: "content_type must be one line"}
	}
	op := method + " " + in.Path
	if in.Body == "" {
		return op, nil
	}
	ct := strings.TrimSpace(in.ContentType)
	if ct == "" {
		ct = "text/plain; charset=utf-8"
		if json.Valid([]byte(in.Body)) {
			ct = "application/json"
		}
	}
	return op + "\nContent-Type: " + ct + "\n\n" + in.Body, nil
}

func (t *mcpTools) operation(ctx context.Context, req *mcp.CallToolRequest, target string, kind spec.Protocol, tool, op, reason string) (*mcp.CallToolResult, outcome, error) {
	if o := t.checkKind(target, kind, tool); o != nil {
		return result(*o)
	}
	body := operationRequest{Target: target, Mode: "exec", Kind: kind.String(), Operation: op, Reason: reason}
	return result(t.execGrant(ctx, req, body, kind, 0))
}

// checkKind refuses, before anything is filed, a tool aimed at a target of
// another kind, when the policy is known locally. Unknown targets go to the
// broker, which has the final word.
func (t *mcpTools) checkKind(target string, want spec.Protocol, tool string) *outcome {
	if strings.TrimSpace(target) == "" {
		return &outcome{State: "bad_request", Message: "target is required", Next: "call list_targets for the names"}
	}
	if t.cfg.Policy == nil {
		return nil
	}
	tg, ok := t.cfg.Policy.Target(target)
	if !ok || tg.Protocol == want {
		return nil
	}
	return &outcome{State: "bad_request", Target: target,
		Message: fmt.Sprintf("target %s is a %s target; %s works on %s targets", target, tg.Protocol, tool, want),
		Next:    fmt.Sprintf("use %s for %s targets", toolFor(tg.Protocol), tg.Protocol)}
}

func toolFor(p spec.Protocol) string {
	switch p {
	case spec.Postgres:
		return toolSQLQuery
	case spec.SSH:
		return toolSSHExec + " or " + toolReadConfig
	case spec.Config:
		return toolReadConfig
	case spec.Kube:
		return toolKubectlExec
	case spec.HTTP:
		return toolHTTPRequest
	}
	return "no tool"
}

// execGrant files an exec grant, waits for a pending approval up to the
// configured wait, runs an approved grant and reports what happened.
func (t *mcpTools) execGrant(ctx context.Context, req *mcp.CallToolRequest, body any, kind spec.Protocol, maxRows int) outcome {
	c, o := t.client(ctx)
	if o != nil {
		return *o
	}
	var g httpapi.GrantView
	if _, err := c.do(ctx, "POST", "/v1/grants", body, &g); err != nil {
		return t.requestFailed(err, kind)
	}
	if o := kindMismatch(g, kind); o != nil {
		return *o
	}
	if g.State == "pending" {
		var err error
		if g, err = t.waitApproval(ctx, req, c, g); err != nil {
			o := t.fromGrant(g)
			o.Message += fmt.Sprintf(" (stopped waiting: %v)", err)
			return o
		}
	}
	if g.State != "approved" {
		return t.fromGrant(g)
	}
	return t.run(ctx, c, g, maxRows)
}

// kindMismatch refuses to go on with a grant the broker judged as another
// kind of operation than the tool's: the broker reads sql and command alike,
// by the target's kind, so `ssh_exec` aimed at a postgres target would run its
// command as SQL. Nothing has run; the unused grant expires.
func kindMismatch(g httpapi.GrantView, kind spec.Protocol) *outcome {
	if len(g.Statements) == 0 || (kind != spec.Postgres && kind != spec.SSH) {
		return nil
	}
	isCommand := g.Statements[0].Class == "command"
	if isCommand == (kind == spec.SSH) {
		return nil
	}
	judged := "SQL"
	if isCommand {
		judged = "a shell command"
	}
	return &outcome{State: "bad_request", GrantID: g.ID, Target: g.Target,
		Message: fmt.Sprintf("target %s is not a %s target: the broker judged the operation as %s; nothing ran", g.Target, kind, judged),
		Next:    "call list_targets and use the tool that matches the target's kind"}
}

// requestFailed turns a refused grant request into an outcome.
func (t *mcpTools) requestFailed(err error, kind spec.Protocol) outcome {
	var ae *apiError
	if !errors.As(err, &ae) {
		return outcome{State: "unreachable", Message: err.Error(), Next: "the broker could not be reached; tell the user, do not retry in a loop"}
	}
	switch ae.Code {
	case "denied":
		var body struct {
			Grant httpapi.GrantView `json:"grant"`
		}
		_ = json.Unmarshal(ae.Body, &body)
		o := t.fromGrant(body.Grant)
		o.State = "denied"
		if len(o.Reasons) == 0 {
			o.Reasons = []string{ae.Message}
		}
		o.Message = "denied by policy: " + strings.Join(o.Reasons, "; ")
		o.Next = "do not retry this operation or a rephrasing of it; tell the user the reason, or ask for an operation the policy allows (see list_targets)"
		return o
	case "bad_request":
		if kind != spec.Postgres && (strings.Contains(ae.Message, "unknown field") || strings.Contains(ae.Message, "is not available for")) {
			return outcome{State: "unsupported",
				Message: fmt.Sprintf("this broker does not accept %s exec grants yet (it refused the request: %s); nothing ran", kind, ae.Message),
				Next:    "tell the user that " + kind.String() + " access through jitgate is not available on this broker yet"}
		}
		o := outcome{State: "bad_request", Message: "the broker refused the request: " + ae.Message}
		if strings.Contains(ae.Message, "unknown target") {
			o.Next = "call list_targets for the target names"
		}
		return o
	case "invalid_token", "unauthenticated":
		return outcome{State: "unauthenticated", Message: "the broker refused the token: " + ae.Message,
			Next: "ask the user to renew the token jitgate mcp uses"}
	}
	return outcome{State: "failed", Message: fmt.Sprintf("the broker answered %s: %s", ae.Code, ae.Message)}
}

// waitApproval long-polls the broker while g is pending, for up to the
// approval wait, sending progress notifications when the client asked for them.
// It returns the latest view; a cancelled call returns the pending grant.
func (t *mcpTools) waitApproval(ctx context.Context, req *mcp.CallToolRequest, c *apiClient, g httpapi.GrantView) (httpapi.GrantView, error) {
	start := t.cfg.Now()
	deadline := start.Add(t.cfg.ApprovalWait)
	var token any
	if req != nil && req.Params != nil {
		token = req.Params.GetProgressToken()
	}
	total := t.cfg.ApprovalWait.Seconds()
	progress := func(msg string) {
		if token == nil || req.Session == nil {
			return
		}
		p := t.cfg.Now().Sub(start).Seconds()
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Message: msg, Progress: p, Total: total}); err != nil {
			t.cfg.Logger.Debug("progress notification failed", "err", err)
		}
	}
	who := strings.Join(append(slices.Clone(g.Approvers), g.ApproverUsers...), ", ")
	progress(fmt.Sprintf("grant %s needs approval by %s (jitgate approve %s)", g.ID, who, g.ID))
	for g.State == "pending" {
		left := deadline.Sub(t.cfg.Now())
		if left <= 0 {
			return g, nil
		}
		poll := min(left, 20*time.Second).Round(time.Millisecond)
		var next httpapi.GrantView
		if _, err := c.do(ctx, "GET", "/v1/grants/"+url.PathEscape(g.ID)+"?wait="+poll.String(), nil, &next); err != nil {
			if ctx.Err() != nil {
				return g, nil
			}
			return g, err
		}
		g = next
		if g.State == "pending" {
			progress(fmt.Sprintf("waiting for approval of %s: %d/%d approvals", g.ID, countApprovals(g), max(g.Quorum, 1)))
		}
	}
	progress(fmt.Sprintf("grant %s is %s", g.ID, g.State))
	return g, nil
}

// run runs an approved exec grant and reports its masked result.
func (t *mcpTools) run(ctx context.Context, c *apiClient, g httpapi.GrantView, maxRows int) outcome {
	var res httpapi.RunResponse
	if _, err := c.do(ctx, "POST", "/v1/grants/"+url.PathEscape(g.ID)+"/run", nil, &res); err != nil {
		o := t.fromGrant(g)
		var ae *apiError
		if !errors.As(err, &ae) {
			o.State, o.Message = "unreachable", err.Error()
			return o
		}
		var body struct {
			Grant     *httpapi.GrantView `json:"grant"`
			Recording string             `json:"recording"`
		}
		_ = json.Unmarshal(ae.Body, &body)
		if body.Grant != nil {
			o = t.fromGrant(*body.Grant)
		}
		o.Recording = firstNonEmpty(body.Recording, o.Recording)
		switch ae.Code {
		case "denied":
			o.State = "blocked"
			o.Reasons = []string{ae.Message}
			o.Message = "blocked by the proxy's guard: " + ae.Message
			o.Next = "do not retry this operation or a rephrasing of it; tell the user the reason"
		case "expired":
			o.State, o.Message = "expired", "the grant expired before it ran: "+ae.Message
			o.Next = "file the request again if it is still needed"
		case "forbidden", "not_found", "bad_request":
			o.State, o.Message = ae.Code, ae.Message
		default:
			o.State, o.Message = "failed", "the operation failed: "+ae.Message
			o.Next = "tell the user; the target may be down"
			if strings.Contains(ae.Message, "SQLSTATE") {
				// The broker reports the target's own error: the statement, not the target, is at fault.
				o.Message = "the target refused the statement: " + ae.Message
				o.Next = "correct the statement and call the tool again (a new grant)"
			}
		}
		return o
	}
	o := t.fromGrant(res.Grant)
	o.State, o.Recording = "ok", firstNonEmpty(res.Recording, o.Recording)
	o.Approval, o.Next = nil, ""
	r := res.Result
	if r == nil {
		r = &spec.Result{}
	}
	if maxRows <= 0 {
		maxRows = defaultMaxRows
	}
	maxRows = min(maxRows, maxMaxRows)
	o.Columns, o.Tag, o.Notices, o.RowCount, o.Truncated = r.Columns, r.Tag, r.Notices, len(r.Rows), r.Truncated
	o.Rows = r.Rows
	if len(o.Rows) > maxRows {
		o.Rows, o.Truncated = o.Rows[:maxRows], true
	}
	o.Output = r.Output
	if len(o.Output) > maxOutputBytes {
		o.Output, o.Truncated = o.Output[:maxOutputBytes], true
	}
	o.Message = fmt.Sprintf("ran under grant %s", g.ID)
	if r.Tag != "" {
		o.Message += ": " + r.Tag
	}
	if o.Truncated {
		o.Message += fmt.Sprintf(" (result truncated to %d rows)", len(o.Rows))
	}
	return o
}

// fromGrant describes a grant that did not (or not yet) produce a result.
func (t *mcpTools) fromGrant(g httpapi.GrantView) outcome {
	o := outcome{State: g.State, GrantID: g.ID, Target: g.Target, Access: g.Access, Rule: g.Rule, Reasons: g.Reasons, Recording: g.Recording}
	for _, s := range g.Statements {
		o.Statements = append(o.Statements, statementJSON{SQL: s.SQL, Kind: s.Kind, Class: s.Class})
	}
	if len(g.Approvers)+len(g.ApproverUsers) > 0 {
		o.Approval = &approvalInfo{Groups: g.Approvers, Users: g.ApproverUsers, Quorum: max(g.Quorum, 1), Approvals: countApprovals(g),
			PendingUntil: g.PendingUntil, Command: "jitgate approve " + g.ID}
		if t.cfg.ApproveURL != "" && g.ID != "" {
			o.Approval.URL = t.cfg.ApproveURL + "/grants/" + url.PathEscape(g.ID)
		}
	}
	switch g.State {
	case "pending":
		until := ""
		if g.PendingUntil != nil {
			until = " until " + g.PendingUntil.UTC().Format(time.RFC3339)
		}
		who := strings.Join(append(slices.Clone(g.Approvers), g.ApproverUsers...), ", ")
		o.Message = fmt.Sprintf("grant %s is waiting for approval by %s (%d/%d approvals)%s; nothing has run yet", g.ID, who, countApprovals(g), max(g.Quorum, 1), until)
		o.Next = fmt.Sprintf("tell the user an approver must run `jitgate approve %s`", g.ID)
		if o.Approval != nil && o.Approval.URL != "" {
			o.Next += " or open " + o.Approval.URL
		}
		o.Next += fmt.Sprintf("; then call grant_status with grant_id %s (wait true) for the result. Do not file the same request again.", g.ID)
	case "denied":
		var why []string
		for _, a := range g.Approvals {
			if a.Decision == "deny" {
				why = append(why, fmt.Sprintf("denied by %s: %s", firstNonEmpty(a.Name, a.By), a.Reason))
			}
		}
		if len(why) > 0 {
			o.Reasons = append(why, o.Reasons...)
		}
		o.Message = fmt.Sprintf("grant %s was denied: %s", g.ID, strings.Join(o.Reasons, "; "))
		o.Next = "do not retry this operation or a rephrasing of it; tell the user the reason"
	case "expired":
		o.Message = fmt.Sprintf("grant %s expired before it was approved or used", g.ID)
		o.Next = "file the request again if it is still needed, and tell the user an approval is required"
	case "approved":
		o.Message = fmt.Sprintf("grant %s is approved and has not run yet", g.ID)
		o.Next = fmt.Sprintf("call grant_status with grant_id %s to run it", g.ID)
	case "active":
		o.Message = fmt.Sprintf("grant %s is running", g.ID)
		o.Next = "call grant_status again in a little while"
	case "ended":
		o.Message = fmt.Sprintf("grant %s has run and ended; its result was returned to the call that ran it", g.ID)
		if g.Recording != "" {
			o.Message += "; recording " + g.Recording
		}
		o.Next = "file a new request to run the operation again"
	case "failed":
		o.Message = fmt.Sprintf("grant %s failed: %s", g.ID, g.Error)
	case "revoked":
		o.Message = fmt.Sprintf("grant %s was revoked", g.ID)
	default:
		o.Message = fmt.Sprintf("grant %s is %s", g.ID, g.State)
	}
	return o
}

func (t *mcpTools) grantStatus(ctx context.Context, req *mcp.CallToolRequest, in grantStatusIn) (*mcp.CallToolResult, outcome, error) {
	if !validGrantID(in.GrantID) {
		return result(outcome{State: "bad_request", Message: fmt.Sprintf("grant_id %q is not a grant id (g_...)", in.GrantID)})
	}
	c, o := t.client(ctx)
	if o != nil {
		return result(*o)
	}
	var g httpapi.GrantView
	if _, err := c.do(ctx, "GET", "/v1/grants/"+url.PathEscape(in.GrantID), nil, &g); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return result(outcome{State: firstNonEmpty(map[string]string{"not_found": "not_found", "forbidden": "forbidden", "invalid_token": "unauthenticated", "unauthenticated": "unauthenticated"}[ae.Code], "failed"),
				GrantID: in.GrantID, Message: ae.Message})
		}
		return result(outcome{State: "unreachable", GrantID: in.GrantID, Message: err.Error()})
	}
	if g.State == "pending" && in.Wait {
		var err error
		if g, err = t.waitApproval(ctx, req, c, g); err != nil {
			o := t.fromGrant(g)
			o.Message += fmt.Sprintf(" (stopped waiting: %v)", err)
			return result(o)
		}
	}
	if g.State == "approved" && g.Mode == "exec" && (in.Run == nil || *in.Run) {
		return result(t.run(ctx, c, g, in.MaxRows))
	}
	return result(t.fromGrant(g))
}

// validGrantID keeps ids path-safe before they reach a URL.
func validGrantID(id string) bool {
	if !strings.HasPrefix(id, "g_") || len(id) > 64 {
		return false
	}
	for _, r := range id[2:] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return len(id) > 2
}

// --- list_targets ---

type listTargetsIn struct{}

type listTargetsOut struct {
	State    string       `json:"state" jsonschema:"ok, unsupported or an error state"`
	Message  string       `json:"message"`
	Source   string       `json:"source,omitempty" jsonschema:"broker, or policy (computed offline; the broker decides each call)"`
	Identity *whoJSON     `json:"identity,omitempty"`
	Targets  []targetJSON `json:"targets,omitempty"`
}

type whoJSON struct {
	Issuer  string   `json:"issuer"`
	Subject string   `json:"subject"`
	Groups  []string `json:"groups,omitempty"`
}

type targetJSON struct {
	Name        string       `json:"name"`
	Kind        string       `json:"kind"`
	Description string       `json:"description,omitempty"`
	Database    string       `json:"database,omitempty"`
	Tool        string       `json:"tool" jsonschema:"the tool to use for this target"`
	Access      []accessJSON `json:"access" jsonschema:"levels this identity may ask for"`
}

type accessJSON struct {
	Level     string   `json:"level" jsonschema:"read, write or admin"`
	Effect    string   `json:"effect" jsonschema:"allow (runs at once) or approve (a human must approve each operation)"`
	Rule      string   `json:"rule"`
	MaxTTL    string   `json:"max_ttl,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	Quorum    int      `json:"quorum,omitempty"`
}

func (t *mcpTools) listTargets(ctx context.Context, req *mcp.CallToolRequest, _ listTargetsIn) (*mcp.CallToolResult, listTargetsOut, error) {
	fail := func(o listTargetsOut) (*mcp.CallToolResult, listTargetsOut, error) {
		return &mcp.CallToolResult{IsError: true}, o, nil
	}
	c, o := t.client(ctx)
	if o != nil {
		return fail(listTargetsOut{State: o.State, Message: o.Message})
	}
	// A broker that can answer for itself wins (GET /v1/targets, same shape).
	var fromBroker struct {
		Identity *whoJSON     `json:"identity"`
		Targets  []targetJSON `json:"targets"`
	}
	_, err := c.do(ctx, "GET", "/v1/targets", nil, &fromBroker)
	var ae *apiError
	switch {
	case err == nil:
		return nil, listTargetsOut{State: "ok", Source: "broker", Identity: fromBroker.Identity, Targets: fromBroker.Targets,
			Message: fmt.Sprintf("%d targets", len(fromBroker.Targets))}, nil
	case errors.As(err, &ae) && (ae.Code == "invalid_token" || ae.Code == "unauthenticated"):
		return fail(listTargetsOut{State: "unauthenticated", Message: "the broker refused the token: " + ae.Message})
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		// No such endpoint yet: fall back to the policy file.
	case !errors.As(err, &ae) && t.cfg.Policy == nil:
		return fail(listTargetsOut{State: "unreachable", Message: err.Error()})
	}
	if t.cfg.Policy == nil {
		return fail(listTargetsOut{State: "unsupported",
			Message: "this broker cannot list targets, and jitgate mcp was started without --policy; ask the user for the target names (or to start jitgate mcp with --policy FILE)"})
	}
	who, err := claimsIdentity(c.token, t.cfg.Policy, t.cfg.Broker)
	if err != nil {
		return fail(listTargetsOut{State: "unauthenticated", Message: err.Error()})
	}
	out := listTargetsOut{State: "ok", Source: "policy", Identity: &whoJSON{Issuer: firstNonEmpty(who.IssuerName, who.Issuer), Subject: who.Subject, Groups: who.Groups},
		Targets: offlineTargets(t.cfg.Policy, who)}
	out.Message = fmt.Sprintf("%d targets (computed offline from the policy file and your token's claims; rules that look at the statement text may decide differently; the broker decides each call)", len(out.Targets))
	return nil, out, nil
}

// offlineTargets evaluates the policy for who at each access level of exec
// mode, with the broker's own decision code, and keeps what is not denied.
func offlineTargets(p *policy.Policy, who identity.Identity) []targetJSON {
	out := []targetJSON{}
	for i := range p.Targets {
		tg := &p.Targets[i]
		tj := targetJSON{Name: tg.Name, Kind: tg.Protocol.String(), Description: tg.Description, Database: tg.Database, Tool: toolFor(tg.Protocol), Access: []accessJSON{}}
		for _, a := range []spec.Access{spec.Read, spec.Write, spec.Admin} {
			d := p.Decide(policy.Input{Identity: who, Target: tg.Name, Mode: spec.Exec, Access: a})
			if d.Effect == policy.EffectDeny {
				continue
			}
			aj := accessJSON{Level: a.String(), Effect: d.Effect.String(), Rule: d.Rule}
			if d.MaxTTL > 0 {
				aj.MaxTTL = d.MaxTTL.String()
			}
			if d.Approval != nil {
				aj.Approvers = append(slices.Clone(d.Approval.Groups), d.Approval.Users...)
				aj.Quorum = max(d.Approval.Quorum, 1)
			}
			tj.Access = append(tj.Access, aj)
		}
		if len(tj.Access) > 0 {
			out = append(out, tj)
		}
	}
	return out
}

// claimsIdentity reads the token's claims WITHOUT verifying it, to predict
// decisions offline. It is advisory: the broker verifies every call.
func claimsIdentity(tok string, p *policy.Policy, broker string) (identity.Identity, error) {
	claims, err := jwtClaims(tok)
	if err != nil {
		return identity.Identity{}, fmt.Errorf("%v, so targets cannot be computed offline", err)
	}
	who := identity.Identity{Claims: claims}
	who.Issuer, _ = claims["iss"].(string)
	who.Subject, _ = claims["sub"].(string)
	groupsClaim := "groups"
	for _, is := range p.Issuers {
		if is.Issuer == who.Issuer {
			who.IssuerName, who.DevOnly = is.Name, is.Dev
			if is.GroupsClaim != "" {
				groupsClaim = is.GroupsClaim
			}
		}
	}
	if who.IssuerName == "" && who.Issuer == broker+"/dev/oidc" {
		who.IssuerName, who.DevOnly = "dev", true // jitgate dev's embedded issuer
	}
	if gs, ok := claims[groupsClaim].([]any); ok {
		for _, g := range gs {
			if s, ok := g.(string); ok {
				who.Groups = append(who.Groups, s)
			}
		}
	}
	return who, nil
}

// jwtClaims decodes a JWT's payload WITHOUT verifying the signature.
func jwtClaims(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(tok) > 16<<10 || len(parts) != 3 {
		return nil, errors.New("the token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the token's payload is not base64url: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("the token's payload is not a JSON object")
	}
	for k, v := range claims {
		claims[k] = plainNumbers(v)
	}
	return claims, nil
}

// plainNumbers turns json.Numbers into int64 (integral) or float64, as the
// broker's verifier does.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = plainNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = plainNumbers(x[k])
		}
	}
	return v
}

// --- tokens ---

// tokenSource yields the OIDC token to present to the broker on each call.
type tokenSource interface {
	Token(ctx context.Context) (string, error)
}

type staticToken string

func (s staticToken) Token(context.Context) (string, error) { return string(s), nil }

// fileToken re-reads its file on every call, so a rotated token is picked up.
type fileToken string

func (f fileToken) Token(context.Context) (string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", f)
	}
	return tok, nil
}

// actionsToken fetches a fresh GitHub Actions job token on every call.
type actionsToken struct{}

func (actionsToken) Token(context.Context) (string, error) { return githubActionsToken() }

func mcpTokenSource(ctx context.Context, cmd *cli.Command, log *slog.Logger) (tokenSource, error) {
	if tok := strings.TrimSpace(cmd.String("token")); tok != "" {
		return staticToken(tok), nil
	}
	if f := cmd.String("token-file"); f != "" {
		ts := fileToken(f)
		if _, err := ts.Token(ctx); err != nil {
			return nil, usageErr("%v", err)
		}
		return ts, nil
	}
	if os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL") != "" && os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN") != "" {
		return actionsToken{}, nil
	}
	if iss := cmd.String("issuer"); iss != "" {
		if cmd.String("client-id") == "" {
			return nil, usageErr("device-code login needs --client-id (the OAuth client registered for device authorization at %s)", iss)
		}
		d, err := newDeviceLogin(ctx, deviceLoginConfig{Issuer: iss, ClientID: cmd.String("client-id"),
			Scopes: strings.Fields(cmd.String("scopes")), Logger: log, Prompt: os.Stderr})
		if err != nil {
			return nil, usageErr("%v", err)
		}
		go d.Run(ctx)
		return d, nil
	}
	return nil, usageErr("no token: set JITGATE_TOKEN, pass --token-file FILE, or sign in with --issuer URL --client-id ID (device code)")
}

// deviceLoginConfig configures an OAuth 2.0 device authorization grant (RFC 8628).
type deviceLoginConfig struct {
	Issuer   string
	ClientID string
	Scopes   []string
	// HTTPClient talks to the issuer; default: 30s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Prompt receives the sign-in instructions for the human (stderr: stdout
	// carries the MCP protocol).
	Prompt interface{ Write([]byte) (int, error) }
	Now    func() time.Time
	// MinHold is the least time a token is held before it is refreshed, so an
	// issuer handing out already-expired tokens cannot cause a busy loop;
	// default 30s.
	MinHold time.Duration
}

// deviceLogin signs a human in with the device flow and keeps the token fresh.
// Token never blocks: while a sign-in is pending it returns a
// *loginRequiredError carrying the link and code for the model to show.
//
//	d, err := newDeviceLogin(ctx, cfg) // discovery; fails when the issuer has no device endpoint
//	go d.Run(ctx)                      // signs in, refreshes, signs in again when needed
//	tok, err := d.Token(ctx)
type deviceLogin struct {
	cfg   deviceLoginConfig
	oauth *oauth2.Config

	mu      sync.Mutex
	tok     *oauth2.Token
	raw     string
	expires time.Time
	pending *oauth2.DeviceAuthResponse
	lastErr error
}

// loginRequiredError says a human has to finish signing in.
type loginRequiredError struct{ info loginInfo }

func (e *loginRequiredError) Error() string {
	return fmt.Sprintf("sign in at %s with code %s", e.info.VerificationURI, e.info.UserCode)
}

func newDeviceLogin(ctx context.Context, cfg deviceLoginConfig) (*deviceLogin, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID}
	}
	if cfg.MinHold <= 0 {
		cfg.MinHold = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, cfg.HTTPClient), 30*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(dctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("device login: discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		Device string `json:"device_authorization_endpoint"`
	}
	if err := prov.Claims(&meta); err != nil {
		return nil, fmt.Errorf("device login: discovery document: %w", err)
	}
	if meta.Device == "" {
		return nil, fmt.Errorf("device login: the issuer %s advertises no device_authorization_endpoint in its discovery document, so device-code sign-in is not possible; "+
			"give jitgate mcp a token instead (JITGATE_TOKEN or --token-file), or enable the device authorization grant for client %s at the issuer", cfg.Issuer, cfg.ClientID)
	}
	ep := prov.Endpoint()
	ep.DeviceAuthURL = meta.Device
	return &deviceLogin{cfg: cfg, oauth: &oauth2.Config{ClientID: cfg.ClientID, Endpoint: ep, Scopes: cfg.Scopes}}, nil
}

func (d *deviceLogin) Token(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.raw != "" && d.cfg.Now().Before(d.expires) {
		return d.raw, nil
	}
	if d.pending != nil {
		p := d.pending
		info := loginInfo{VerificationURI: p.VerificationURI, VerificationURIComplete: p.VerificationURIComplete, UserCode: p.UserCode}
		if !p.Expiry.IsZero() {
			info.Expires = ptr(p.Expiry)
		}
		return "", &loginRequiredError{info: info}
	}
	if d.lastErr != nil {
		return "", fmt.Errorf("device login failed: %w (restart jitgate mcp to sign in again)", d.lastErr)
	}
	return "", errors.New("device login is signing in (or refreshing the token); try again in a moment")
}

// Run signs in and keeps the token fresh until ctx ends: it refreshes with the
// refresh token when there is one, and otherwise starts a new sign-in.
func (d *deviceLogin) Run(ctx context.Context) {
	ctx = oidc.ClientContext(ctx, d.cfg.HTTPClient)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, d.cfg.HTTPClient)
	var tok *oauth2.Token
	for ctx.Err() == nil {
		if tok == nil || tok.RefreshToken == "" {
			var err error
			if tok, err = d.signIn(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				var re *oauth2.RetrieveError
				if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &re) && re.ErrorCode == "expired_token" {
					// Nobody signed in before the code expired: offer a new one.
					d.cfg.Logger.Info("device login: code expired; requesting a new one")
					continue
				}
				d.fail(err)
				return
			}
		}
		if !d.hold(ctx, tok) {
			return
		}
		// Expired: refresh once; a failed refresh means a new sign-in. The ID
		// token may expire before the access token, so force the refresh.
		stale := *tok
		stale.Expiry = time.Unix(1, 0)
		nt, err := d.oauth.TokenSource(ctx, &stale).Token()
		if err != nil {
			d.cfg.Logger.Warn("device login: refresh failed; signing in again", "err", err)
			tok = nil
			continue
		}
		tok = nt
	}
}

func (d *deviceLogin) signIn(ctx context.Context) (*oauth2.Token, error) {
	resp, err := d.oauth.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("device authorization request: %w", err)
	}
	d.mu.Lock()
	d.pending, d.raw = resp, ""
	d.mu.Unlock()
	link := resp.VerificationURI
	if resp.VerificationURIComplete != "" {
		link = resp.VerificationURIComplete
	}
	if d.cfg.Prompt != nil {
		fmt.Fprintf(d.cfg.Prompt, "jitgate mcp: to sign in, open %s and enter the code %s\n", link, resp.UserCode)
	}
	tok, err := d.oauth.DeviceAccessToken(ctx, resp)
	if err != nil {
		return nil, fmt.Errorf("device sign-in: %w", err)
	}
	return tok, nil
}

// hold publishes tok and waits until it is about to expire. It reports false
// when ctx ended.
func (d *deviceLogin) hold(ctx context.Context, tok *oauth2.Token) bool {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		raw = tok.AccessToken
	}
	exp := tok.Expiry
	if claims, err := jwtClaims(raw); err == nil {
		if e, ok := claims["exp"].(int64); ok && (exp.IsZero() || time.Unix(e, 0).Before(exp)) {
			exp = time.Unix(e, 0)
		}
	}
	if exp.IsZero() {
		exp = d.cfg.Now().Add(time.Hour)
	}
	d.mu.Lock()
	d.raw, d.expires, d.pending, d.lastErr = raw, exp.Add(-30*time.Second), nil, nil
	d.mu.Unlock()
	d.cfg.Logger.Info("device login: signed in", "expires", exp)
	timer := time.NewTimer(max(d.expires.Sub(d.cfg.Now()), d.cfg.MinHold))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (d *deviceLogin) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending, d.lastErr = nil, err
	d.cfg.Logger.Error("device login failed", "err", err)
}
