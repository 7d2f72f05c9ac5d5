package targetsource_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/sshca"
	"github.com/jitgate/jitgate/broker/credentials/targetsource"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func loadTargets(t *testing.T, targets string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte("version: 1\ntargets:\n"+targets+"rules: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEveryKind: each target kind gets its own source from the same entry
// point, the secret it issues comes from the policy's reference, and a
// missing reference or a Vault source without Vault is refused naming what
// is missing (never a source that issues empty credentials).
func TestEveryKind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caPEM, err := sshca.GenerateCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	caFile, tokFile := filepath.Join(dir, "ca"), filepath.Join(dir, "tok")
	_ = os.WriteFile(caFile, caPEM, 0o600)
	_ = os.WriteFile(tokFile, []byte("tok-from-file\n"), 0o600)
	p := loadTargets(t, `  - {name: pg, kind: postgres, address: 127.0.0.1:5432, database: shop, credentials: {source: local, admin_dsn: "postgres://admin@127.0.0.1:5432/shop", read_role: r}}
  - {name: web, kind: ssh, address: 127.0.0.1:22, user: deploy, known_hosts: ["127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmhb1mq0T2VDDQ4bQvCbXxIxaFd1Q4Zr6p2b7sVtqwf"], credentials: {source: local, ca_key: "file:`+caFile+`"}}
  - {name: api, kind: http, address: 127.0.0.1:80, http: {rules: [{path: /x}]}, credentials: {source: local, token: "file:`+tokFile+`"}}
  - {name: k8s, kind: kube, address: 127.0.0.1:6443, namespace: shop, credentials: {source: local, token: "file:`+tokFile+`"}}
  - {name: api-missing, kind: http, address: 127.0.0.1:80, http: {rules: [{path: /x}]}, credentials: {source: local, token: "env:NOT_SET"}}
  - {name: k8s-vault, kind: kube, address: 127.0.0.1:6443, namespace: shop, credentials: {source: vault, vault_mount: kubernetes, vault_roles: {read: r}}}
  - {name: pg-vault, kind: postgres, address: 127.0.0.1:5432, database: shop, credentials: {source: vault, vault_mount: database, vault_roles: {read: r}}}
  - {name: ssh-nokey, kind: ssh, address: 127.0.0.1:22, user: deploy, known_hosts: ["127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmhb1mq0T2VDDQ4bQvCbXxIxaFd1Q4Zr6p2b7sVtqwf"], credentials: {source: local, ca_key: "env:NOT_SET"}}
`)
	env := testEnv()
	req := credentials.Request{GrantID: "g_1", Access: spec.Read, Expires: time.Now().Add(time.Minute)}
	for _, name := range []string{"api", "k8s"} {
		tg, _ := p.Target(name)
		src, err := targetsource.New(tg, env)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cred, err := src.Issue(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: issue: %v", name, err)
		}
		if cred.Token.Secret().Reveal() != "tok-from-file" {
			t.Errorf("%s: issued token %q, want the file's", name, cred.Token.Secret().Reveal())
		}
	}
	tg, _ := p.Target("web")
	src, err := targetsource.New(tg, env)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := src.Issue(context.Background(), req)
	if err != nil || !strings.Contains(cred.Certificate, "-cert-v01@openssh.com") || cred.Username != "deploy" {
		t.Errorf("ssh: %+v, %v; want a certificate for deploy", cred, err)
	}
	tg, _ = p.Target("pg")
	if _, err := targetsource.New(tg, env); err != nil {
		t.Errorf("postgres local: %v", err)
	}
	for name, want := range map[string]string{
		"api-missing": "token: not set",
		"k8s-vault":   "needs a Vault client",
		"pg-vault":    "needs a Vault client",
		"ssh-nokey":   "ca_key: not set",
	} {
		tg, _ := p.Target(name)
		if _, err := targetsource.New(tg, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", name, err, want)
		}
	}
	if _, err := targetsource.New(tg, targetsource.Env{}); err == nil || !strings.Contains(err.Error(), "Resolve is required") {
		t.Errorf("no resolver: %v", err)
	}
}
