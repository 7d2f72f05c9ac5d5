package kv_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/kv"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/vaulttest"
)

const readToken = "cfg-read-9f8e7d6c5b4a"

func startVault(t *testing.T) *vaulttest.Server {
	t.Helper()
	return vaulttest.Start(t, vaulttest.Config{KV: map[string]map[string]map[string]any{
		"secret": {
			"config-api/reader": {"token": readToken, "note": "rotate monthly"},
			"config-api/writer": {"other": "x"},
			"config-api/mixed":  {"n": 42, "flag": true, "s": "v"},
		},
	}})
}

func request(a spec.Access) credentials.Request {
	return credentials.Request{GrantID: "g-1", Access: a, Expires: time.Now().Add(time.Hour)}
}

func newSource(t *testing.T, cfg kv.Config) *kv.Source {
	t.Helper()
	s, err := kv.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIssueFromVault(t *testing.T) {
	t.Parallel()
	vt := startVault(t)
	src := newSource(t, kv.Config{Client: vt.Client(), Secrets: map[spec.Access]kv.Ref{
		spec.Read:  {Path: "config-api/reader", Field: "token"},
		spec.Write: {Path: "config-api/writer", Field: "token"},
	}})
	req := request(spec.Read)
	cred, err := src.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token.Secret().Reveal() != readToken || cred.LeaseID != "kv:secret/config-api/reader#1" || !cred.Expires.Equal(req.Expires) {
		t.Fatalf("credential %v lease %q expires %v", cred, cred.LeaseID, cred.Expires)
	}
	// A new version is picked up, and the lease id names it.
	vt.PutKV("secret", "config-api/reader", map[string]any{"token": "rotated-token-0001"})
	cred, err = src.Issue(t.Context(), req)
	if err != nil || cred.Token.Secret().Reveal() != "rotated-token-0001" || cred.LeaseID != "kv:secret/config-api/reader#2" {
		t.Fatalf("after rotation: %q %v", cred.LeaseID, err)
	}
	// Revoke is a no-op for its own leases, twice, and refuses foreign ones.
	for range 2 {
		if err := src.Revoke(t.Context(), cred); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	if err := src.Revoke(t.Context(), spec.Credential{LeaseID: "database/creds/x/1"}); err == nil {
		t.Fatal("Revoke accepted a database lease")
	}
	if err := src.Revoke(t.Context(), spec.Credential{LeaseID: "kv:other/config-api/reader#1"}); err == nil {
		t.Fatal("Revoke accepted a lease of another mount")
	}
	// Nothing prints the token.
	for _, s := range []string{fmt.Sprint(cred), fmt.Sprintf("%+v %#v", cred, cred), fmt.Sprint(src), fmt.Sprintf("%#v", src)} {
		if strings.Contains(s, "rotated-token") {
			t.Fatalf("token printed: %s", s)
		}
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "cred", credentials.Redacted(cred), "src", src)
	if strings.Contains(logs.String(), "rotated-token") {
		t.Fatalf("token logged: %s", logs.String())
	}
}

func TestIssueRefusals(t *testing.T) {
	t.Parallel()
	vt := startVault(t)
	src := newSource(t, kv.Config{Client: vt.Client(), Secrets: map[spec.Access]kv.Ref{
		spec.Read:  {Path: "config-api/reader", Field: "token"},
		spec.Write: {Path: "config-api/writer", Field: "token"},
		spec.Admin: {Path: "config-api/absent", Field: "token"},
	}})
	ctx := t.Context()
	if _, err := src.Issue(ctx, request(spec.Write)); !errors.Is(err, credentials.ErrNoRole) || !strings.Contains(err.Error(), `has no field "token"`) {
		t.Errorf("missing field: %v", err)
	}
	if _, err := src.Issue(ctx, request(spec.Admin)); !errors.Is(err, credentials.ErrNoRole) || !strings.Contains(err.Error(), "nothing at this path") {
		t.Errorf("missing path: %v", err)
	}
	if _, err := src.Issue(ctx, credentials.Request{GrantID: "g", Access: spec.Read, Expires: time.Now().Add(-time.Second)}); err == nil {
		t.Error("expired request accepted")
	}
	only := newSource(t, kv.Config{Client: vt.Client(), Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "config-api/reader", Field: "token"}}})
	if _, err := only.Issue(ctx, request(spec.Write)); !errors.Is(err, credentials.ErrNoRole) {
		t.Errorf("unmapped level: %v", err)
	}

	vt.DeleteKV("secret", "config-api/reader", 0)
	if _, err := src.Issue(ctx, request(spec.Read)); !errors.Is(err, credentials.ErrNoRole) || !strings.Contains(err.Error(), "deleted or destroyed") {
		t.Errorf("deleted version: %v", err)
	}
	vt.PutKV("secret", "config-api/reader", map[string]any{"token": "t2"})
	vt.DestroyKV("secret", "config-api/reader", 0)
	if _, err := src.Issue(ctx, request(spec.Read)); !errors.Is(err, credentials.ErrNoRole) || !strings.Contains(err.Error(), "deleted or destroyed") {
		t.Errorf("destroyed version: %v", err)
	}

	bad := vt.Client()
	bad.SetToken("hvs.wrong")
	denied := newSource(t, kv.Config{Client: bad, Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "config-api/writer", Field: "other"}}})
	if _, err := denied.Issue(ctx, request(spec.Read)); !errors.Is(err, credentials.ErrDenied) {
		t.Errorf("wrong Vault token: %v", err)
	}
	vt.SetDown(true)
	if _, err := src.Issue(ctx, request(spec.Write)); !errors.Is(err, credentials.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("sealed Vault: %v", err)
	}
}

func TestReadEntry(t *testing.T) {
	t.Parallel()
	vt := startVault(t)
	src := newSource(t, kv.Config{Client: vt.Client(), Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "config-api/reader", Field: "token"}}})
	e, err := src.Read(t.Context(), "config-api/mixed")
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != 1 || e.Data["n"].Reveal() != "42" || e.Data["flag"].Reveal() != "true" || e.Data["s"].Reveal() != "v" {
		t.Fatalf("entry %+v", e)
	}
	b, _ := json.Marshal(e)
	if strings.Contains(string(b), `"s":"v"`) || !strings.Contains(string(b), `"s":"[REDACTED]"`) {
		t.Fatalf("entry marshals values: %s", b)
	}
	for _, p := range []string{"../x", "a//b", "", "a/./b"} {
		if _, err := src.Read(t.Context(), p); err == nil {
			t.Errorf("Read(%q) accepted", p)
		}
	}
}

func TestStaticStore(t *testing.T) {
	t.Parallel()
	src := newSource(t, kv.Config{
		Static:  map[string]map[string]string{"config-api": {"token": "static-token-123"}},
		Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "config-api", Field: "token"}, spec.Write: {Path: "config-api", Field: "nope"}},
	})
	cred, err := src.Issue(t.Context(), request(spec.Read))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token.Secret().Reveal() != "static-token-123" || cred.LeaseID != "kv:secret/config-api#0" {
		t.Fatalf("static credential lease %q", cred.LeaseID)
	}
	if err := src.Revoke(t.Context(), cred); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Issue(t.Context(), request(spec.Write)); !errors.Is(err, credentials.ErrNoRole) {
		t.Fatalf("missing static field: %v", err)
	}
	if s := fmt.Sprint(src); strings.Contains(s, "static-token") || !strings.Contains(s, "store=static") {
		t.Fatalf("String = %s", s)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	client, err := api.NewClient(&api.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ok := map[spec.Access]kv.Ref{spec.Read: {Path: "a", Field: "f"}}
	cases := []struct {
		cfg  kv.Config
		want string
	}{
		{kv.Config{Secrets: ok}, "set Client (Vault) or Static"},
		{kv.Config{Client: client, Static: map[string]map[string]string{}, Secrets: ok}, "only one of"},
		{kv.Config{Client: client}, "Secrets is empty"},
		{kv.Config{Client: client, Mount: "a/../b", Secrets: ok}, "Mount"},
		{kv.Config{Client: client, Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "../x", Field: "f"}}}, "secret path"},
		{kv.Config{Client: client, Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "x"}}}, "has no field"},
		{kv.Config{Client: client, Secrets: map[spec.Access]kv.Ref{spec.AccessNone: {Path: "x", Field: "f"}}}, "not read, write or admin"},
		{kv.Config{Static: map[string]map[string]string{"a b": {}}, Secrets: ok}, "static path"},
	}
	for _, c := range cases {
		if _, err := kv.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%v) = %v, want %q", c.want, err, c.want)
		}
	}
}

// TestRealVault reads a token from a real Vault's KV v2 mount "secret" (as
// `vault server -dev` has) when VAULT_ADDR and VAULT_TOKEN are set.
func TestRealVault(t *testing.T) {
	if os.Getenv("VAULT_ADDR") == "" || os.Getenv("VAULT_TOKEN") == "" {
		t.Skip("real Vault KV test skipped: set VAULT_ADDR and VAULT_TOKEN (a token that may write secret/data/jitgate-test/*) to run it")
	}
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("jitgate-test/kv-%d", time.Now().UnixNano())
	w, err := client.KVv2("secret").Put(t.Context(), path, map[string]any{"token": "real-vault-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.KVv2("secret").DeleteMetadata(t.Context(), path) })
	src := newSource(t, kv.Config{Client: client, Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: path, Field: "token"}}})
	cred, err := src.Issue(t.Context(), request(spec.Read))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token.Secret().Reveal() != "real-vault-token" || cred.LeaseID != kv.LeaseID("secret", path, w.VersionMetadata.Version) {
		t.Fatalf("lease %q", cred.LeaseID)
	}
}
