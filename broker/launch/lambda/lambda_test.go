package lambda_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	vaultapi "github.com/hashicorp/vault/api"

	jgcreds "github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/vault"
	"github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/vaulttest"
)

// Secrets planted in every spec; none may appear outside Vault.
const (
	password  = "pw-Zq8x7W6v5U4t3S2r"
	clientSec = "cs-KIXQJvU2nF0rX8c6"
	maskKey   = "mk-AbCdEfGhIjKlMnOp"
)

// noMinter satisfies vaulttest's Minter; these tests only wrap and unwrap.
type noMinter struct{}

func (noMinter) Issue(context.Context, jgcreds.Request) (spec.Credential, error) {
	return spec.Credential{}, errors.New("not used")
}
func (noMinter) Revoke(context.Context, spec.Credential) error { return nil }

func startVault(t *testing.T) *vaulttest.Server {
	return vaulttest.Start(t, vaulttest.Config{Minter: noMinter{}, Roles: map[string]spec.Access{"r": spec.Read}})
}

func execSpec() *spec.Grant {
	return &spec.Grant{
		ID: "g_lambdatest", Mode: spec.Exec, Identity: "okta|alice", Rule: "r", Operation: "SELECT 1",
		Target:       spec.Target{Name: "db", Protocol: spec.Postgres, Address: "db.internal:5432", Database: "shop"},
		ClientSecret: spec.WireSecret(clientSec), Deadline: time.Now().Add(time.Minute),
		Credential: spec.Credential{Username: "v-role", Password: spec.WireSecret(password), LeaseID: "database/creds/r/1", Expires: time.Now().Add(2 * time.Minute)},
		Guard:      spec.Guard{Access: spec.Read}, Mask: spec.Mask{Style: "token", TokenKey: spec.WireSecret(maskKey)},
		Record: spec.Record{Dir: "/tmp/recordings"},
	}
}

// fakeRunner is Lambda's Invoke API in front of a runner that behaves as
// functions/runner does: it unwraps the token once and answers.
type fakeRunner struct {
	t     *testing.T
	vault *vaultapi.Client
	reply func(inv lambda.Invocation, g *spec.Grant, unwrapErr error) (status int, fnErr string, body []byte)

	mu       sync.Mutex
	payloads [][]byte
	paths    []string
	unwraps  []*spec.Grant
}

func (f *fakeRunner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var inv lambda.Invocation
	_ = json.Unmarshal(body, &inv)
	g, err := lambda.UnwrapGrant(r.Context(), f.vault, inv.WrapToken, inv.GrantID)
	f.mu.Lock()
	f.payloads = append(f.payloads, body)
	f.paths = append(f.paths, r.URL.Path)
	f.unwraps = append(f.unwraps, g)
	f.mu.Unlock()
	status, fnErr, out := f.reply(inv, g, err)
	if fnErr != "" {
		w.Header().Set("X-Amz-Function-Error", fnErr)
	}
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func newLauncher(t *testing.T, v *vaulttest.Server, runner http.Handler, mod ...func(*lambda.Config)) *lambda.Launcher {
	t.Helper()
	hs := httptest.NewServer(runner)
	t.Cleanup(hs.Close)
	client := awslambda.New(awslambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(hs.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	cfg := lambda.Config{Client: client, Function: "jitgate-runner", Wrapper: lambda.VaultWrapper{Client: v.Client()}}
	for _, m := range mod {
		m(&cfg)
	}
	l, err := lambda.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func okReply(inv lambda.Invocation, g *spec.Grant, err error) (int, string, []byte) {
	if err != nil {
		b, _ := json.Marshal(lambda.Response{Statuses: []spec.Status{{Type: spec.StatusError, GrantID: inv.GrantID, Code: spec.CodeBadSpec, Error: err.Error()}}})
		return 200, "", b
	}
	v := "1"
	b, _ := json.Marshal(lambda.Response{Statuses: []spec.Status{
		{Type: spec.StatusResult, GrantID: g.ID, Result: &spec.Result{Columns: []string{"?column?"}, Rows: [][]*string{{&v}}, Tag: "SELECT 1"}},
		{Type: spec.StatusExit, GrantID: g.ID, Recording: "s3://recordings/" + g.ID + ".jsonl"},
	}})
	return 200, "", b
}

// TestInvocationCarriesOnlyIDAndToken: the runner receives the grant id and a
// wrapping token, never a credential; the token unwraps to the exact spec,
// once; the result and the recording come back through Ready and Wait.
func TestInvocationCarriesOnlyIDAndToken(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	runner := &fakeRunner{t: t, vault: v.Client(), reply: okReply}
	l := newLauncher(t, v, runner)
	g := execSpec()
	h, err := l.Launch(t.Context(), g)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Ready(t.Context())
	if err != nil || st.Type != spec.StatusResult || st.Result == nil || *st.Result.Rows[0][0] != "1" {
		t.Fatalf("Ready: %+v, %v", st, err)
	}
	exit, err := h.Wait(t.Context())
	if err != nil || exit.Type != spec.StatusExit || exit.Recording != "s3://recordings/g_lambdatest.jsonl" {
		t.Fatalf("Wait: %+v, %v", exit, err)
	}
	if err := h.Stop(); err != nil {
		t.Errorf("Stop after the end: %v", err)
	}

	runner.mu.Lock()
	defer runner.mu.Unlock()
	if len(runner.payloads) != 1 || runner.paths[0] != "/2015-03-31/functions/jitgate-runner/invocations" {
		t.Fatalf("invocations %v", runner.paths)
	}
	var fields map[string]string
	if err := json.Unmarshal(runner.payloads[0], &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 2 || fields["grant_id"] != g.ID || !strings.HasPrefix(fields["wrap_token"], "hvs.") {
		t.Errorf("payload %s: want exactly grant_id and wrap_token", runner.payloads[0])
	}
	for _, secret := range []string{password, clientSec, maskKey, "v-role"} {
		if strings.Contains(string(runner.payloads[0]), secret) {
			t.Errorf("the invocation payload contains %q", secret)
		}
	}
	got := runner.unwraps[0]
	if got == nil || got.Credential.Password.Secret().Reveal() != password || string(got.ClientSecret) != clientSec || string(got.Mask.TokenKey) != maskKey || got.Operation != g.Operation {
		t.Errorf("unwrapped spec %+v does not carry the original credential and secrets", got)
	}
	// The token was spent: a second unwrap (an eavesdropper, a retry) fails.
	_, err = lambda.UnwrapGrant(t.Context(), v.Client(), fields["wrap_token"], g.ID)
	if !errors.Is(err, vault.ErrWrapToken) {
		t.Errorf("second unwrap: %v, want vault.ErrWrapToken", err)
	}
	// Stringers never show the token.
	inv := lambda.Invocation{GrantID: g.ID, WrapToken: fields["wrap_token"]}
	if strings.Contains(inv.String(), "hvs.") || strings.Contains(inv.LogValue().String(), "hvs.") {
		t.Error("Invocation prints its wrap token")
	}
}

func TestRunnerFailuresBecomeStatusErrors(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	tests := []struct {
		name  string
		reply func(lambda.Invocation, *spec.Grant, error) (int, string, []byte)
		code  string
		want  string
	}{
		{"function error", func(lambda.Invocation, *spec.Grant, error) (int, string, []byte) {
			return 200, "Unhandled", []byte(`{"errorMessage":"Task timed out after 60.00 seconds","errorType":"Runtime.ExitError"}`)
		}, spec.CodeInternal, "Task timed out"},
		{"blocked", func(inv lambda.Invocation, _ *spec.Grant, _ error) (int, string, []byte) {
			b, _ := json.Marshal(lambda.Response{Statuses: []spec.Status{{Type: spec.StatusError, GrantID: inv.GrantID, Code: spec.CodeBlocked, Error: "DROP is not allowed"}, {Type: spec.StatusExit, GrantID: inv.GrantID}}})
			return 200, "", b
		}, spec.CodeBlocked, "DROP is not allowed"},
		{"garbage", func(lambda.Invocation, *spec.Grant, error) (int, string, []byte) { return 200, "", []byte(`<html>`) }, spec.CodeInternal, "not a response"},
		{"empty", func(lambda.Invocation, *spec.Grant, error) (int, string, []byte) {
			return 200, "", []byte(`{"statuses":[]}`)
		}, spec.CodeInternal, "without a status"},
		{"other grant", func(lambda.Invocation, *spec.Grant, error) (int, string, []byte) {
			return 200, "", []byte(`{"statuses":[{"type":"result","grant_id":"g_other","result":{}}]}`)
		}, spec.CodeInternal, `for grant "g_other"`},
		{"throttled", func(lambda.Invocation, *spec.Grant, error) (int, string, []byte) {
			return 429, "", []byte(`{"Type":"User","message":"Rate Exceeded."}`)
		}, spec.CodeInternal, "invoke jitgate-runner"},
	}
	for _, tc := range tests {
		l := newLauncher(t, v, &fakeRunner{t: t, vault: v.Client(), reply: tc.reply})
		h, err := l.Launch(t.Context(), execSpec())
		if err != nil {
			t.Fatalf("%s: Launch: %v", tc.name, err)
		}
		st, err := h.Ready(t.Context())
		if err == nil || st.Type != spec.StatusError || st.Code != tc.code || !strings.Contains(st.Error, tc.want) {
			t.Errorf("%s: Ready %+v, %v; want %s error mentioning %q", tc.name, st, err, tc.code, tc.want)
		}
		if _, err := h.Wait(t.Context()); err == nil && tc.name != "blocked" {
			t.Errorf("%s: Wait succeeded", tc.name)
		}
	}
}

// TestRefusedBeforeWrapping: a session grant, an invalid spec or an
// unreachable Vault never reaches the runner.
func TestRefusedBeforeWrapping(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	runner := &fakeRunner{t: t, vault: v.Client(), reply: okReply}
	l := newLauncher(t, v, runner)
	session := execSpec()
	session.Mode = spec.Session
	noOp := execSpec()
	noOp.Operation = " "
	for name, g := range map[string]*spec.Grant{"session": session, "no operation": noOp, "nil": nil} {
		if _, err := l.Launch(t.Context(), g); err == nil {
			t.Errorf("%s: Launch succeeded", name)
		}
	}
	v.SetDown(true)
	if _, err := l.Launch(t.Context(), execSpec()); err == nil || !strings.Contains(err.Error(), "wrap") {
		t.Errorf("Vault sealed: Launch err %v, want a wrap error", err)
	}
	runner.mu.Lock()
	defer runner.mu.Unlock()
	if len(runner.payloads) != 0 {
		t.Errorf("%d invocations reached the runner", len(runner.payloads))
	}
}

// TestSlowRunnerHitsTheDeadline: the launch context's deadline bounds the
// invocation; Ready reports an expired run.
func TestSlowRunnerHitsTheDeadline(t *testing.T) {
	t.Parallel()
	v := startVault(t)
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so the server notices the client hanging up
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	l := newLauncher(t, v, slow)
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	h, err := l.Launch(ctx, execSpec())
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Ready(t.Context())
	if err == nil || st.Code != spec.CodeExpired {
		t.Errorf("Ready: %+v, %v; want an expired status", st, err)
	}
}

func TestConfigRefusals(t *testing.T) {
	t.Parallel()
	c := awslambda.New(awslambda.Options{Region: "us-east-1"})
	w := lambda.VaultWrapper{}
	for _, tc := range []struct {
		cfg  lambda.Config
		want string
	}{
		{lambda.Config{Function: "f", Wrapper: w}, "Client is required"},
		{lambda.Config{Client: c, Wrapper: w}, "Function is required"},
		{lambda.Config{Client: c, Function: "f"}, "Wrapper is required"},
		{lambda.Config{Client: c, Function: "f", Wrapper: w, WrapTTL: -time.Second}, "negative"},
	} {
		if _, err := lambda.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want %q", err, tc.want)
		}
	}
}
