// Package vaulttest is a TEST DOUBLE of HashiCorp Vault's HTTP API, not Vault.
// No Vault (or OpenBao) server can run on the machines jitgate is tested on, so
// tests of the Vault credential source run against this server instead. It speaks
// only the subset of Vault's API that jitgate uses, with Vault's documented
// envelopes, status codes and error texts, and it is backed by a real credential
// minter (normally the embedded local.Postgres), so the credentials it hands out
// are real PostgreSQL roles.
//
// Endpoints (all under /v1/):
//
//	GET        <mount>/creds/<role>           issue; 200 envelope, 400 "unknown role: <role>"
//	PUT|POST   sys/leases/revoke              {"lease_id": …} or …/revoke/<lease_id>; 204, also for unknown leases
//	PUT|POST   sys/leases/revoke-prefix/<p>   revoke every lease under <p>; 204
//	PUT|POST   sys/wrapping/wrap              wrap the JSON body (needs X-Vault-Wrap-TTL)
//	PUT|POST   sys/wrapping/unwrap            single use; a used or expired token → 400
//	                                          "wrapping token is not valid or does not exist"
//	GET|HEAD   sys/health                     no token needed; 200, or 503 with sealed=true when down
//	GET        <kv mount>/data/<path>[?version=N]  KV v2 read (Config.KV, PutKV); 404 {"errors":[]} when
//	                                          unknown, 404 with data=null and the version metadata when
//	                                          that version is deleted or destroyed (DeleteKV, DestroyKV)
//	POST|PUT   <kubernetes mount>/creds/<role>  Kubernetes secrets engine (Config.Kubernetes):
//	                                          service_account_token for kubernetes_namespace, with a lease
//
// Any response that returns a secret is wrapped when the request carries
// X-Vault-Wrap-TTL (seconds or a Go duration). Every path but sys/health needs
// X-Vault-Token (the root Token, or a wrapping token for unwrap): missing or
// wrong → 403 {"errors":["permission denied"]}. Unknown paths → 404
// {"errors":[]}; a method a path does not support → 405. SetDown(true) makes
// everything answer 503 {"errors":["Vault is sealed"]}, as a sealed Vault does.
//
// What it does not do: policies (the root token may do everything), lease
// renewal and automatic expiry (leases are revoked via the API, and by the
// server's cleanup at the end of the test), namespaces, other engines.
//
//	srv := vaulttest.Start(t, vaulttest.Config{Minter: minter,
//		Roles: map[string]spec.Access{"shop_read": spec.Read}})
//	src, _ := vault.New(vault.Config{Client: srv.Client(), Mount: "database",
//		Roles: map[spec.Access]string{spec.Read: "shop_read"}})
package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Vault's error texts, as the real server words them.
const (
	errPermissionDenied = "permission denied"
	errSealed           = "Vault is sealed"
	errInvalidWrapToken = "wrapping token is not valid or does not exist"
	errLeaseIDRequired  = "lease_id must be specified"
	errUnsupportedOp    = "unsupported operation"
)

var rolePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Config configures the double.
type Config struct {
	// Minter issues and revokes the real credentials behind the API, normally a
	// *local.Postgres.
	Minter credentials.Source
	// Mount is the database secrets engine's mount; default "database".
	Mount string
	// Roles maps each Vault role name to the access level Minter issues for it.
	Roles map[string]spec.Access
	// TTL is every lease's lease_duration and the expiry requested from Minter;
	// default one hour.
	TTL time.Duration
	// Now is the clock for leases and wrapping-token expiry; default time.Now.
	Now func() time.Time
	// KV seeds KV v2 mounts: mount → secret path → data, stored as version 1.
	// A double with KV only may leave Minter and Roles empty.
	KV map[string]map[string]map[string]any
	// Kubernetes enables the Kubernetes secrets engine (kubernetes.go). A
	// double with only Kubernetes (and KV) may leave Minter and Roles empty.
	Kubernetes *KubernetesConfig
}

func (c *Config) validate() error {
	if err := c.validateKV(); err != nil {
		return err
	}
	if c.Kubernetes != nil {
		if err := c.Kubernetes.validate(); err != nil {
			return err
		}
	}
	kvOnly := c.Minter == nil && len(c.Roles) == 0 && (len(c.KV) > 0 || c.Kubernetes != nil)
	if c.Minter == nil && !kvOnly {
		return fmt.Errorf("vaulttest: Minter is required")
	}
	if c.Mount == "" {
		c.Mount = "database"
	}
	c.Mount = strings.Trim(c.Mount, "/")
	if len(c.Roles) == 0 && !kvOnly {
		return fmt.Errorf("vaulttest: Roles is empty")
	}
	for name, a := range c.Roles {
		if !rolePattern.MatchString(name) {
			return fmt.Errorf("vaulttest: role name %q must match %s", name, rolePattern)
		}
		if a == spec.AccessNone {
			return fmt.Errorf("vaulttest: role %q has no access level", name)
		}
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	if c.TTL < time.Second {
		return fmt.Errorf("vaulttest: TTL must be at least one second")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Call is one request the double answered. It never holds tokens or bodies.
type Call struct {
	Method string
	Path   string // URL path, e.g. /v1/database/creds/shop_read
	Status int
	// Wrapped reports whether the request asked for response wrapping.
	Wrapped bool
}

// Server is a running double.
type Server struct {
	// Token is the root token; Client() is already configured with it.
	Token string

	cfg Config
	hs  *httptest.Server

	mu     sync.Mutex
	down   bool
	leases map[string]spec.Credential // lease id → minter credential
	wraps  map[string]wrapped         // wrapping token → response
	calls  []Call
	kv     map[string]map[string]*kvSecret // KV v2: mount → path → versions

	kubeLeases  map[string]kubeLease // Kubernetes secrets engine: lease id → token
	kubeRevoked map[string]bool      // tokens whose lease was revoked
}

type wrapped struct {
	body    envelope
	expires time.Time
}

// Start starts the double on a loopback port; it is closed, and every lease still
// outstanding is revoked through Minter, by tb.Cleanup.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if err := cfg.validate(); err != nil {
		tb.Fatal(err)
	}
	s := &Server{
		Token:  "hvs." + randToken(24),
		cfg:    cfg,
		leases: map[string]spec.Credential{},
		wraps:  map[string]wrapped{},
		kv:     map[string]map[string]*kvSecret{},

		kubeLeases:  map[string]kubeLease{},
		kubeRevoked: map[string]bool{},
	}
	for mount, paths := range cfg.KV {
		for p, data := range paths {
			s.PutKV(mount, p, data)
		}
	}
	s.hs = httptest.NewServer(s)
	tb.Cleanup(func() {
		s.hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.mu.Lock()
		left := s.leases
		s.leases = map[string]spec.Credential{}
		s.mu.Unlock()
		for id, cred := range left {
			if err := s.cfg.Minter.Revoke(ctx, cred); err != nil {
				tb.Logf("vaulttest: cleanup: revoke %s: %v", id, err)
			}
		}
	})
	return s
}

// Addr is the server's base URL (Vault's "address"), e.g. http://127.0.0.1:41234.
func (s *Server) Addr() string { return s.hs.URL }

// Client returns a new Vault API client pointed at the double, with the root
// token, no retries and no response wrapping, whatever VAULT_* variables say.
func (s *Server) Client() *api.Client {
	cfg := api.DefaultConfig()
	cfg.Address = s.hs.URL
	cfg.AgentAddress = ""
	cfg.MaxRetries = 0
	cfg.Timeout = 30 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		panic(fmt.Sprintf("vaulttest: client: %v", err)) // only a broken Config can fail here
	}
	c.SetToken(s.Token)
	c.ClearNamespace()
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	return c
}

// SetDown makes the double answer 503 "Vault is sealed" to every request (true)
// or serve again (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Calls returns the requests answered so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Leases returns the ids of the leases not yet revoked, sorted.
func (s *Server) Leases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// envelope is Vault's response body for a secret.
type envelope struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int            `json:"lease_duration"`
	Data          map[string]any `json:"data"`
	WrapInfo      *wrapInfo      `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          any            `json:"auth"`
	MountType     string         `json:"mount_type"`
}

type wrapInfo struct {
	Token           string `json:"token"`
	Accessor        string `json:"accessor"`
	TTL             int    `json:"ttl"`
	CreationTime    string `json:"creation_time"`
	CreationPath    string `json:"creation_path"`
	WrappedAccessor string `json:"wrapped_accessor"`
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// ServeHTTP routes one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w}
	defer func() {
		st := rec.status
		if st == 0 {
			st = http.StatusOK
		}
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Status: st, Wrapped: r.Header.Get("X-Vault-Wrap-TTL") != ""})
		s.mu.Unlock()
	}()
	s.route(rec, r)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeErrors(w, http.StatusNotFound)
		return
	}
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if path == "sys/health" {
		s.health(w, r, down)
		return
	}
	if down {
		writeErrors(w, http.StatusServiceUnavailable, errSealed)
		return
	}
	token := r.Header.Get("X-Vault-Token")
	if token == "" {
		if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			token = b
		}
	}
	if token == "" {
		writeErrors(w, http.StatusForbidden, errPermissionDenied)
		return
	}
	if path == "sys/wrapping/unwrap" {
		if !isWrite(r) {
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
			return
		}
		s.unwrap(w, r, token)
		return
	}
	if token != s.Token {
		writeErrors(w, http.StatusForbidden, errPermissionDenied)
		return
	}
	if mount, secretPath, ok := s.kvPath(path); ok {
		if r.Method != http.MethodGet {
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
			return
		}
		s.kvRead(w, r, mount, secretPath)
		return
	}
	if k := s.cfg.Kubernetes; k != nil && strings.HasPrefix(path, k.Mount+"/creds/") {
		role := strings.TrimPrefix(path, k.Mount+"/creds/")
		switch {
		case role == "" || strings.Contains(role, "/"):
			writeErrors(w, http.StatusNotFound)
		case !isWrite(r):
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
		default:
			s.kubeCreds(w, r, path, role)
		}
		return
	}
	switch {
	case strings.HasPrefix(path, s.cfg.Mount+"/creds/"):
		role := strings.TrimPrefix(path, s.cfg.Mount+"/creds/")
		if role == "" || strings.Contains(role, "/") {
			writeErrors(w, http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet {
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
			return
		}
		s.creds(w, r, path, role)
	case path == "sys/leases/revoke" || strings.HasPrefix(path, "sys/leases/revoke/"):
		if !isWrite(r) {
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
			return
		}
		s.revoke(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "sys/leases/revoke"), "/"))
	case strings.HasPrefix(path, "sys/leases/revoke-prefix/"):
		if !isWrite(r) {
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
			return
		}
		s.revokePrefix(w, r, strings.TrimPrefix(path, "sys/leases/revoke-prefix/"))
	case path == "sys/wrapping/wrap":
		if !isWrite(r) {
			writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
			return
		}
		s.wrapBody(w, r)
	default:
		writeErrors(w, http.StatusNotFound)
	}
}

func isWrite(r *http.Request) bool { return r.Method == http.MethodPut || r.Method == http.MethodPost }

func (s *Server) health(w http.ResponseWriter, r *http.Request, down bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeErrors(w, http.StatusMethodNotAllowed, errUnsupportedOp)
		return
	}
	status := http.StatusOK
	if down {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{
		"initialized":                  true,
		"sealed":                       down,
		"standby":                      down,
		"performance_standby":          false,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              s.cfg.Now().Unix(),
		"version":                      "0.0.0+jitgate-vaulttest",
		"cluster_name":                 "vaulttest",
		"cluster_id":                   "00000000-0000-4000-8000-000000000000",
	})
}

func (s *Server) creds(w http.ResponseWriter, r *http.Request, path, role string) {
	access, ok := s.cfg.Roles[role]
	if !ok {
		writeErrors(w, http.StatusBadRequest, "unknown role: "+role)
		return
	}
	ttl, wrap, err := wrapTTL(r)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	id := randToken(24)
	cred, err := s.cfg.Minter.Issue(r.Context(), credentials.Request{
		GrantID: "vault-" + strings.ToLower(id[:12]),
		Access:  access,
		Expires: s.cfg.Now().Add(s.cfg.TTL),
	})
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, "1 error occurred:\n\t* "+err.Error()+"\n\n")
		return
	}
	leaseID := path + "/" + id
	s.mu.Lock()
	s.leases[leaseID] = cred
	s.mu.Unlock()
	resp := envelope{
		RequestID:     uuid(),
		LeaseID:       leaseID,
		Renewable:     true,
		LeaseDuration: int(s.cfg.TTL / time.Second),
		Data:          map[string]any{"username": cred.Username, "password": string(cred.Password)},
		MountType:     "database",
	}
	if wrap {
		s.respondWrapped(w, resp, ttl, path)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, urlLease string) {
	var body struct {
		LeaseID string `json:"lease_id"`
	}
	if err := readJSON(r, &body); err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	leaseID := body.LeaseID
	if leaseID == "" {
		leaseID = urlLease
	}
	if leaseID == "" {
		writeErrors(w, http.StatusBadRequest, errLeaseIDRequired)
		return
	}
	if err := s.revokeLeases(r.Context(), func(id string) bool { return id == leaseID }); err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) revokePrefix(w http.ResponseWriter, r *http.Request, prefix string) {
	if err := s.revokeLeases(r.Context(), func(id string) bool { return strings.HasPrefix(id, prefix) }); err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// revokeLeases revokes the matching leases through the minter. A lease whose
// revocation fails stays registered, as in Vault.
func (s *Server) revokeLeases(ctx context.Context, match func(string) bool) error {
	s.revokeKubeLeases(ctx, match)
	s.mu.Lock()
	todo := map[string]spec.Credential{}
	for id, c := range s.leases {
		if match(id) {
			todo[id] = c
		}
	}
	s.mu.Unlock()
	var errs []error
	for id, c := range todo {
		if err := s.cfg.Minter.Revoke(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("failed to revoke entry: lease %s: %w", id, err))
			continue
		}
		s.mu.Lock()
		delete(s.leases, id)
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (s *Server) wrapBody(w http.ResponseWriter, r *http.Request) {
	ttl, wrap, err := wrapTTL(r)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	if !wrap {
		// The double's own wording: Vault refuses this path without a wrap TTL.
		writeErrors(w, http.StatusBadRequest, "sys/wrapping/wrap requires the X-Vault-Wrap-TTL header")
		return
	}
	var data map[string]any
	if err := readJSON(r, &data); err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	s.respondWrapped(w, envelope{RequestID: uuid(), Data: data}, ttl, "sys/wrapping/wrap")
}

func (s *Server) respondWrapped(w http.ResponseWriter, inner envelope, ttl time.Duration, creationPath string) {
	now := s.cfg.Now()
	token := "hvs." + randToken(24)
	s.mu.Lock()
	s.wraps[token] = wrapped{body: inner, expires: now.Add(ttl)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, envelope{
		RequestID: uuid(),
		WrapInfo: &wrapInfo{
			Token:        token,
			Accessor:     randToken(24),
			TTL:          int(ttl / time.Second),
			CreationTime: now.Format(time.RFC3339Nano),
			CreationPath: creationPath,
		},
	})
}

func (s *Server) unwrap(w http.ResponseWriter, r *http.Request, headerToken string) {
	var body struct {
		Token string `json:"token"`
	}
	if err := readJSON(r, &body); err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	token := headerToken
	if body.Token != "" {
		token = body.Token
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entry, ok := s.wraps[token]
	if ok && !s.cfg.Now().Before(entry.expires) {
		delete(s.wraps, token) // expired
		ok = false
	}
	if !ok {
		writeErrors(w, http.StatusBadRequest, errInvalidWrapToken)
		return
	}
	if body.Token != "" && headerToken != s.Token {
		// A wrapping token in the body needs a caller token that may use this
		// endpoint; Vault checks it after validating the wrapping token, and the
		// wrapping token is not consumed.
		writeErrors(w, http.StatusForbidden, errPermissionDenied)
		return
	}
	delete(s.wraps, token) // single use
	inner := entry.body
	inner.RequestID = uuid()
	writeJSON(w, http.StatusOK, inner)
}

// wrapTTL parses X-Vault-Wrap-TTL: whole seconds, or a Go duration.
func wrapTTL(r *http.Request) (time.Duration, bool, error) {
	v := strings.TrimSpace(r.Header.Get("X-Vault-Wrap-TTL"))
	if v == "" {
		return 0, false, nil
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, false, fmt.Errorf("error parsing wrap TTL %q", v)
	}
	if d < time.Second {
		return 0, false, fmt.Errorf("wrap TTL %q is below one second", v)
	}
	return d, true, nil
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("failed to read request body: %v", err)
	}
	if s := strings.TrimSpace(string(b)); s == "" || s == "null" {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("failed to parse JSON input: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErrors writes Vault's error body {"errors":[...]}, with [] for none.
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
