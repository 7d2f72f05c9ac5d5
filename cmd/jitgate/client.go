package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
)

// clientFlags are shared by every command that talks to a broker.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "broker", Usage: "broker URL", Value: "http://127.0.0.1:8700", Sources: cli.EnvVars("JITGATE_BROKER")},
		&cli.StringFlag{Name: "token", Usage: "OIDC token (prefer --token-file or JITGATE_TOKEN: argv is visible to other users)", Sources: cli.EnvVars("JITGATE_TOKEN")},
		&cli.StringFlag{Name: "token-file", Usage: "file holding the OIDC token", Sources: cli.EnvVars("JITGATE_TOKEN_FILE")},
	}
}

// apiClient talks to the broker's HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// apiError is a broker error answer.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Body    []byte
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

func newClient(cmd *cli.Command) (*apiClient, error) {
	tok := strings.TrimSpace(cmd.String("token"))
	if f := cmd.String("token-file"); tok == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErr("read token file: %v", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		var err error
		if tok, err = githubActionsToken(); err != nil {
			return nil, cli.Exit(err.Error(), exitError)
		}
	}
	if tok == "" {
		return nil, usageErr("no token: pass --token-file FILE or set JITGATE_TOKEN (in dev: export JITGATE_TOKEN=$(jitgate dev token --sub me --groups ai-agents))")
	}
	base := strings.TrimRight(cmd.String("broker"), "/")
	if _, err := url.Parse(base); err != nil || !strings.HasPrefix(base, "http") {
		return nil, usageErr("--broker %q is not an http(s) URL", base)
	}
	return &apiClient{base: base, token: tok, http: &http.Client{Timeout: 10 * time.Minute}}, nil
}

// githubActionsToken fetches the job's OIDC token when running in GitHub Actions.
func githubActionsToken() (string, error) {
	u, t := os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if u == "" || t == "" {
		return "", nil
	}
	aud := os.Getenv("JITGATE_AUDIENCE")
	if aud == "" {
		aud = "jitgate"
	}
	req, err := http.NewRequest("GET", u+"&audience="+url.QueryEscape(aud), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+t)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch GitHub Actions OIDC token: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("fetch GitHub Actions OIDC token: status %d", resp.StatusCode)
	}
	return body.Value, nil
}

func (c *apiClient) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, cli.Exit(fmt.Sprintf("cannot reach the broker at %s: %v (is `jitgate dev` running? set --broker or JITGATE_BROKER)", c.base, err), exitError)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		var env struct {
			Error apiError `json:"error"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || env.Error.Code == "" {
			return resp.StatusCode, &apiError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(raw)), Body: raw}
		}
		env.Error.Status, env.Error.Body = resp.StatusCode, raw
		return resp.StatusCode, &env.Error
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode broker answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// exitFor maps a broker error to the CLI's exit codes.
func exitFor(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.Code {
		case "denied", "forbidden":
			msg := ae.Message
			if !strings.HasPrefix(msg, "denied") {
				msg = "denied: " + msg
			}
			return cli.Exit(msg, exitDenied)
		case "expired":
			return cli.Exit(ae.Message, exitTimedOut)
		case "statement_failed":
			return cli.Exit(ae.Message, exitError)
		case "bad_request", "not_found", "too_large", "invalid_token", "unauthenticated":
			return cli.Exit(ae.Message, exitUsage)
		}
		return cli.Exit(ae.Message, exitError)
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return err
	}
	return cli.Exit(err.Error(), exitError)
}
