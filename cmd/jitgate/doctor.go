package main

// `jitgate doctor`: checks a deployment's configuration before anyone needs
// it: the policy file, each issuer's discovery document and keys, each target's
// credential source, the grant store, the recordings directory, the audit
// chain, and (when given) the broker and the caller's token. One line per
// check, ✓ or ✗, and a fix for every failure; exit 1 if anything failed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v3"
	bbolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials/sshca"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check policy, issuers, credential sources, store and recordings; prints a fix for each failure (exit 1 if any failed)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "policy", Usage: "policy YAML file", Sources: cli.EnvVars("JITGATE_POLICY")},
			dataDirFlag(),
			&cli.StringFlag{Name: "broker", Usage: "also check this broker's health (default: not checked)", Sources: cli.EnvVars("JITGATE_BROKER")},
			&cli.StringFlag{Name: "token", Usage: "also check this token against the policy's issuers (not verified: claims only)", Sources: cli.EnvVars("JITGATE_TOKEN")},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the token to check", Sources: cli.EnvVars("JITGATE_TOKEN_FILE")},
			&cli.DurationFlag{Name: "timeout", Usage: "per-check network timeout", Value: 5 * time.Second},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.String("policy") == "" {
				return usageErr("doctor needs --policy FILE (or JITGATE_POLICY)")
			}
			tok := strings.TrimSpace(cmd.String("token"))
			if f := cmd.String("token-file"); tok == "" && f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return usageErr("read token file: %v", err)
				}
				tok = strings.TrimSpace(string(b))
			}
			res := runDoctor(ctx, doctorConfig{
				PolicyPath: cmd.String("policy"), DataDir: cmd.String("data-dir"), Broker: strings.TrimRight(cmd.String("broker"), "/"),
				Token: tok, Timeout: cmd.Duration("timeout"),
			})
			if failed := printChecks(os.Stdout, res); failed > 0 {
				return cli.Exit(fmt.Sprintf("%d of %d checks failed", failed, len(res)), exitError)
			}
			return nil
		},
	}
}

// doctorConfig says what to check and with which clients.
type doctorConfig struct {
	PolicyPath string
	DataDir    string
	// Broker, when set, is checked with GET /healthz.
	Broker string
	// Token, when set, is checked against the policy's issuers (claims only).
	Token string
	// Timeout bounds each network check; default 5s.
	Timeout time.Duration
	// HTTPClient fetches discovery documents, key sets and /healthz; default:
	// the default client (SSL_CERT_FILE is honoured).
	HTTPClient *http.Client
	// Vault returns the client for vault-sourced targets; default: from
	// VAULT_ADDR and VAULT_TOKEN, as the broker builds it.
	Vault func() (*vaultapi.Client, error)
	Now   func() time.Time
}

// checkResult is one line of the report.
type checkResult struct {
	Name   string
	OK     bool
	Detail string
	// Fix says what to do; set on every failure.
	Fix string
}

func printChecks(w io.Writer, res []checkResult) (failed int) {
	for _, r := range res {
		if r.OK {
			fmt.Fprintf(w, "✓ %s: %s\n", r.Name, r.Detail)
			continue
		}
		failed++
		fmt.Fprintf(w, "✗ %s: %s — fix: %s\n", r.Name, r.Detail, r.Fix)
	}
	return failed
}

func runDoctor(ctx context.Context, cfg doctorConfig) []checkResult {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Vault == nil {
		cfg.Vault = doctorVault
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var out []checkResult
	p, err := policy.Load(cfg.PolicyPath)
	if err != nil {
		out = append(out, checkResult{Name: "policy", Detail: oneLine(err.Error()),
			Fix: fmt.Sprintf("correct the file at the position shown (jitgate policy check --policy %s lists every error)", cfg.PolicyPath)})
	} else {
		out = append(out, checkResult{Name: "policy", OK: true,
			Detail: fmt.Sprintf("%s: %d issuers, %d targets, %d rules", cfg.PolicyPath, len(p.Issuers), len(p.Targets), len(p.Rules))})
		for _, is := range p.Issuers {
			out = append(out, checkIssuer(ctx, cfg, is))
		}
		for i := range p.Targets {
			if r, ok := checkCredentials(ctx, cfg, &p.Targets[i]); ok {
				out = append(out, r)
			}
		}
	}
	out = append(out, checkStore(cfg.DataDir), checkWritable("recordings", filepath.Join(cfg.DataDir, "recordings")), checkAudit(cfg.DataDir))
	if cfg.Broker != "" {
		out = append(out, checkBroker(ctx, cfg))
	}
	if cfg.Token != "" {
		out = append(out, checkToken(cfg, p))
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func checkIssuer(ctx context.Context, cfg doctorConfig, is policy.Issuer) checkResult {
	r := checkResult{Name: "issuer " + is.Name}
	if is.Dev {
		r.OK, r.Detail = true, "DEV ONLY issuer, served by jitgate dev itself (not checked)"
		return r
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.Timeout)
	defer cancel()
	prov, err := oidc.NewProvider(ctx, is.Issuer)
	if err != nil {
		r.Detail = fmt.Sprintf("discovery at %s/.well-known/openid-configuration: %s", is.Issuer, oneLine(err.Error()))
		r.Fix = "check the issuer URL (compared exactly: scheme, host, path, no trailing slash), DNS and proxies; for a private CA set SSL_CERT_FILE"
		return r
	}
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := prov.Claims(&meta); err != nil || meta.JWKS == "" {
		r.Detail, r.Fix = "the discovery document has no jwks_uri", "point issuer at the OIDC issuer itself (its discovery document must name jwks_uri)"
		return r
	}
	n, err := countKeys(ctx, cfg.HTTPClient, meta.JWKS)
	if err != nil {
		r.Detail, r.Fix = fmt.Sprintf("key set at %s: %v", meta.JWKS, err), "the issuer's jwks_uri must serve its signing keys; check network access to it"
		return r
	}
	r.OK, r.Detail = true, fmt.Sprintf("discovery ok, %d signing keys at %s", n, meta.JWKS)
	return r
}

func countKeys(ctx context.Context, c *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, errors.New(oneLine(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return 0, fmt.Errorf("not a JSON key set: %v", err)
	}
	if len(set.Keys) == 0 {
		return 0, errors.New("no keys")
	}
	return len(set.Keys), nil
}

// checkCredentials checks a target's credential source without minting
// anything. It reports false for targets that have no source to check.
func checkCredentials(ctx context.Context, cfg doctorConfig, t *policy.Target) (checkResult, bool) {
	r := checkResult{Name: "credentials " + t.Name}
	c := t.Credentials
	switch {
	case t.Protocol == spec.SSH:
		return checkSSHSource(ctx, cfg, t), true
	case c.Source == policy.SourceLocal && (t.Protocol == spec.HTTP || t.Protocol == spec.Kube):
		return checkTokenRef(t), true
	case c.Source == policy.SourceLocal && t.Protocol == spec.Config:
		if _, err := buildSource(t); err != nil {
			r.Detail, r.Fix = "embedded store: "+oneLine(err.Error()), "set credentials.store to file:PATH or env:NAME holding {\"<path>\": {\"<field>\": \"value\"}}"
			return r, true
		}
		r.OK, r.Detail = true, fmt.Sprintf("embedded store %s reads", c.Store)
		return r, true
	case c.Source == policy.SourceLocal:
		return checkLocalSource(ctx, cfg, t), true
	case c.Source == policy.SourceVault:
		client, err := cfg.Vault()
		if err != nil {
			r.Detail, r.Fix = err.Error(), "export VAULT_ADDR and VAULT_TOKEN for the broker (a token whose policy may read "+c.VaultMount+"/creds/*)"
			return r, true
		}
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		h, err := client.Sys().HealthWithContext(ctx)
		switch {
		case err != nil && strings.Contains(err.Error(), "Code: 503"):
			r.Detail = fmt.Sprintf("vault at %s answered 503 (sealed, uninitialized or standby)", client.Address())
			r.Fix = "unseal Vault (vault operator unseal) or point VAULT_ADDR at the active node"
		case err != nil:
			r.Detail, r.Fix = fmt.Sprintf("vault at %s: %s", client.Address(), oneLine(err.Error())), "check VAULT_ADDR, network access and Vault's TLS (VAULT_CACERT)"
		case !h.Initialized || h.Sealed:
			r.Detail, r.Fix = fmt.Sprintf("vault at %s is sealed or not initialized", client.Address()), "unseal Vault (vault operator unseal) or point VAULT_ADDR at an active node"
		default:
			var roles []string
			for _, a := range []string{"read", "write", "admin"} {
				if v := c.VaultRoles[a]; v != "" {
					roles = append(roles, a+"="+v)
				}
			}
			r.OK, r.Detail = true, fmt.Sprintf("vault %s at %s is unsealed; mount %s, roles %s", h.Version, client.Address(), c.VaultMount, strings.Join(roles, ", "))
		}
		return r, true
	}
	return r, false
}

// checkTokenRef checks that an http or kube target's configured token
// resolves to something, without printing it.
func checkTokenRef(t *policy.Target) checkResult {
	r := checkResult{Name: "credentials " + t.Name}
	ref := t.Credentials.Token
	v, err := resolveRef(ref)
	switch {
	case ref == "":
		r.Detail, r.Fix = "no token configured", "set credentials.token to env:NAME or file:PATH holding the "+t.Kind+" target's token"
	case err != nil:
		r.Detail, r.Fix = fmt.Sprintf("token %s: %v", ref, err), "export the variable or write the file credentials.token names"
	case strings.TrimSpace(v) == "":
		r.Detail, r.Fix = fmt.Sprintf("token %s is empty", ref), "put the "+t.Kind+" target's token in "+ref
	default:
		r.OK, r.Detail = true, fmt.Sprintf("token %s is set (%d bytes)", ref, len(strings.TrimSpace(v)))
	}
	return r
}

// checkSSHSource loads the target's CA key and shakes hands with its sshd:
// the host key must match known_hosts (authentication is not attempted).
func checkSSHSource(ctx context.Context, cfg doctorConfig, t *policy.Target) checkResult {
	r := checkResult{Name: "credentials " + t.Name}
	pemText, err := resolveRef(t.Credentials.CAKey)
	if err != nil {
		r.Detail, r.Fix = fmt.Sprintf("ca_key %s: %v", t.Credentials.CAKey, err), "set credentials.ca_key to env:NAME or file:PATH holding the SSH CA's private key"
		return r
	}
	ca, err := sshca.LoadCA([]byte(pemText))
	if err != nil {
		r.Detail, r.Fix = "ca_key does not load: "+oneLine(err.Error()), "ca_key must hold the SSH CA's private key in PEM (OpenSSH) form"
		return r
	}
	kh, err := os.CreateTemp("", "jitgate-doctor-known-hosts-*")
	if err != nil {
		r.Detail, r.Fix = err.Error(), "make the temporary directory writable"
		return r
	}
	defer os.Remove(kh.Name())
	_, _ = kh.WriteString(strings.Join(t.KnownHosts, "\n") + "\n")
	kh.Close()
	check, err := knownhosts.New(kh.Name())
	if err != nil {
		r.Detail, r.Fix = "known_hosts: "+oneLine(err.Error()), "known_hosts entries are OpenSSH known_hosts lines (host key-type base64-key, or @cert-authority ...)"
		return r
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", t.Address)
	if err != nil {
		r.Detail, r.Fix = fmt.Sprintf("connect to %s: %s", t.Address, oneLine(err.Error())), "check the target's address and that sshd listens there (firewalls, security groups)"
		return r
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	hostKeyOK := false
	_, _, _, err = ssh.NewClientConn(conn, t.Address, &ssh.ClientConfig{User: t.User, Timeout: cfg.Timeout,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := check(host, remote, key); err != nil {
				return err
			}
			hostKeyOK = true
			return nil
		}})
	var ke *knownhosts.KeyError
	switch {
	case errors.As(err, &ke) || (err != nil && !hostKeyOK && strings.Contains(err.Error(), "knownhosts")):
		r.Detail = fmt.Sprintf("the host key of %s does not match known_hosts: %s", t.Address, oneLine(err.Error()))
		r.Fix = "verify the host's key out of band, then put it in known_hosts (ssh-keyscan -p PORT HOST prints candidates); the proxy refuses to connect until then"
		return r
	case !hostKeyOK:
		r.Detail, r.Fix = fmt.Sprintf("SSH handshake with %s: %v", t.Address, err), "check that the address is an SSH server"
		return r
	}
	r.OK = true
	r.Detail = fmt.Sprintf("CA key %s loads; %s presents a host key in known_hosts (sshd must trust the CA: TrustedUserCAKeys; principal %s)",
		ssh.FingerprintSHA256(ca.PublicKey()), t.Address, t.User)
	return r
}

// doctorVault is the process's Vault client without retries: doctor reports
// a failing Vault at once.
func doctorVault() (*vaultapi.Client, error) {
	c, err := vaultFromEnv()
	if err != nil {
		return nil, err
	}
	c.SetMaxRetries(0)
	return c, nil
}

func checkLocalSource(ctx context.Context, cfg doctorConfig, t *policy.Target) checkResult {
	r := checkResult{Name: "credentials " + t.Name}
	c := t.Credentials
	dsn, err := resolveRef(c.AdminDSN)
	if err != nil {
		r.Detail = fmt.Sprintf("admin_dsn %s: %v", c.AdminDSN, err)
		switch {
		case strings.HasPrefix(c.AdminDSN, "env:"):
			r.Fix = fmt.Sprintf("export %s with a DSN of a role that has CREATEROLE", strings.TrimPrefix(c.AdminDSN, "env:"))
		case strings.HasPrefix(c.AdminDSN, "file:"):
			r.Fix = "write the admin DSN into " + strings.TrimPrefix(c.AdminDSN, "file:")
		default:
			r.Fix = "set credentials.admin_dsn (env:NAME, file:PATH or a DSN)"
		}
		return r
	}
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		r.Detail, r.Fix = "admin_dsn does not parse as a PostgreSQL DSN", "use postgres://user:password@host:port/db or key=value form"
		return r
	}
	pc.Database = t.Database
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		r.Detail = fmt.Sprintf("connect to database %s at %s:%d as %s: %s", t.Database, pc.Host, pc.Port, pc.User, oneLine(err.Error()))
		r.Fix = "check the admin DSN's host, port, user and password, that PostgreSQL accepts the connection (pg_hba.conf), and that database " + t.Database + " exists"
		return r
	}
	defer conn.Close(context.Background())
	var can bool
	if err := conn.QueryRow(ctx, "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&can); err != nil || !can {
		r.Detail = fmt.Sprintf("admin role %s cannot create roles", pc.User)
		r.Fix = fmt.Sprintf("ALTER ROLE %s CREATEROLE (the minter creates one role per grant)", pgx.Identifier{pc.User}.Sanitize())
		return r
	}
	want := []string{}
	for _, role := range []string{c.ReadRole, c.WriteRole, c.AdminRole} {
		if role != "" {
			want = append(want, role)
		}
	}
	var have []string
	rows, err := conn.Query(ctx, "SELECT rolname FROM pg_roles WHERE rolname = ANY($1)", want)
	if err == nil {
		have, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		r.Detail, r.Fix = "list roles: "+oneLine(err.Error()), "check the admin role may read pg_roles"
		return r
	}
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		r.Detail = "roles missing: " + strings.Join(missing, ", ")
		r.Fix = fmt.Sprintf("CREATE ROLE %s NOLOGIN, then GRANT it the privileges that access level needs in %s", strings.Join(missing, " NOLOGIN; CREATE ROLE "), t.Database)
		return r
	}
	r.OK, r.Detail = true, fmt.Sprintf("admin connection to %s at %s:%d as %s can create roles; roles %s exist", t.Database, pc.Host, pc.Port, pc.User, strings.Join(want, ", "))
	return r
}

func checkWritable(name, dir string) checkResult {
	r := checkResult{Name: name}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.Detail, r.Fix = fmt.Sprintf("%s: %v", dir, err), "choose a --data-dir the broker's user can create and write"
		return r
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		r.Detail, r.Fix = fmt.Sprintf("%s is not writable: %v", dir, err), fmt.Sprintf("chown %s to the broker's user, or choose another --data-dir", dir)
		return r
	}
	f.Close()
	os.Remove(f.Name())
	r.OK, r.Detail = true, dir+" is writable"
	return r
}

func checkStore(dataDir string) checkResult {
	r := checkWritable("store", dataDir)
	if !r.OK {
		return r
	}
	path := filepath.Join(dataDir, "grants.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		r.Detail = fmt.Sprintf("%s is writable; grants.db will be created on first start", dataDir)
		return r
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 300 * time.Millisecond})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		r.Detail = path + " is in use by a running jitgate (fine if that is your broker)"
	case err != nil:
		r.OK, r.Detail = false, fmt.Sprintf("%s: %v", path, err)
		r.Fix = "stop the broker, move the damaged file aside and start again (grants in flight are lost; the audit log keeps their history)"
	default:
		db.Close()
		r.Detail = path + " opens"
	}
	return r
}

func checkAudit(dataDir string) checkResult {
	r := checkResult{Name: "audit log"}
	path := filepath.Join(dataDir, "audit.jsonl")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		r.OK, r.Detail = true, path+" will be created on first start"
		return r
	}
	if err != nil {
		r.Detail, r.Fix = err.Error(), "make the audit log readable and writable by the broker's user"
		return r
	}
	defer f.Close()
	n, err := audit.Verify(f)
	if err != nil {
		var ve *audit.VerifyError
		if errors.As(err, &ve) {
			r.Detail = fmt.Sprintf("%s: chain BROKEN at line %d: %s", path, ve.Line, ve.Reason)
		} else {
			r.Detail = fmt.Sprintf("%s: %v", path, err)
		}
		r.Fix = "treat it as an incident: keep the file, find who edited it (jitgate audit verify names the line), and start a new log"
		return r
	}
	r.OK, r.Detail = true, fmt.Sprintf("%s: %d events, chain intact", path, n)
	return r
}

func checkBroker(ctx context.Context, cfg doctorConfig) checkResult {
	r := checkResult{Name: "broker"}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", cfg.Broker+"/healthz", nil)
	if err != nil {
		r.Detail, r.Fix = fmt.Sprintf("%q: %v", cfg.Broker, err), "set --broker to the broker's http(s) URL"
		return r
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		r.Detail, r.Fix = oneLine(err.Error()), "start it (jitgate dev --policy FILE, or jitgate broker serve) or correct --broker / JITGATE_BROKER"
		return r
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		r.Detail, r.Fix = fmt.Sprintf("%s/healthz answered %d", cfg.Broker, resp.StatusCode), "check that --broker points at a jitgate broker"
		return r
	}
	r.OK, r.Detail = true, cfg.Broker+" is healthy"
	return r
}

// checkToken compares the token's claims with the policy's issuers. It does
// not verify the signature: the broker does that on every request.
func checkToken(cfg doctorConfig, p *policy.Policy) checkResult {
	r := checkResult{Name: "token"}
	claims, err := jwtClaims(cfg.Token)
	if err != nil {
		r.Detail, r.Fix = err.Error(), "pass the raw OIDC token (three base64url parts separated by dots)"
		return r
	}
	iss, _ := claims["iss"].(string)
	if exp, ok := claims["exp"].(int64); !ok || !time.Unix(exp, 0).After(cfg.Now()) {
		r.Detail, r.Fix = "the token has expired (or has no exp)", "get a fresh token from the issuer"
		return r
	}
	if p == nil {
		r.OK, r.Detail = true, fmt.Sprintf("issued by %s for %v (policy not loaded, not compared)", iss, claims["aud"])
		return r
	}
	if cfg.Broker != "" && iss == cfg.Broker+"/dev/oidc" {
		r.OK, r.Detail = true, "DEV ONLY token from jitgate dev's issuer"
		return r
	}
	var auds []string
	switch a := claims["aud"].(type) {
	case string:
		auds = []string{a}
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok {
				auds = append(auds, s)
			}
		}
	}
	for _, is := range p.Issuers {
		if is.Issuer != iss {
			continue
		}
		if !slices.Contains(auds, is.Audience) {
			r.Detail = fmt.Sprintf("audience %v, but issuer %s expects %s", auds, is.Name, is.Audience)
			r.Fix = fmt.Sprintf("request the token for audience %s (GitHub Actions: JITGATE_AUDIENCE or the action's audience input)", is.Audience)
			return r
		}
		r.OK, r.Detail = true, fmt.Sprintf("issued by %s (%s) for %s, subject %v", is.Name, iss, is.Audience, claims["sub"])
		return r
	}
	var names []string
	for _, is := range p.Issuers {
		names = append(names, is.Issuer)
	}
	r.Detail = fmt.Sprintf("issuer %q is not in the policy (it trusts %s)", iss, strings.Join(names, ", "))
	r.Fix = "add the issuer to the policy's issuers (the URL must match the token's iss exactly), or use a token from a trusted issuer"
	return r
}
