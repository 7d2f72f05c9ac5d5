package vaulttest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/broker/credentials/credtest"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/vaulttest"
)

var cluster struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.srv != nil {
		cluster.srv.Stop()
	}
	os.Exit(code)
}

type fixture struct {
	vt  *vaulttest.Server
	dsn string
}

func start(t *testing.T) fixture {
	t.Helper()
	cluster.once.Do(func() { cluster.srv, cluster.err = pgtest.StartServer() })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	dsn, db := credtest.Database(t, cluster.srv)
	minter, err := local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: db,
		Roles: map[spec.Access]string{spec.Read: credtest.ReadRole, spec.Write: credtest.WriteRole}})
	if err != nil {
		t.Fatal(err)
	}
	vt := vaulttest.Start(t, vaulttest.Config{Minter: minter, TTL: 15 * time.Minute,
		Roles: map[string]spec.Access{"shop_read": spec.Read, "shop_write": spec.Write}})
	return fixture{vt: vt, dsn: dsn}
}

type reply struct {
	status int
	body   map[string]any
	raw    string
}

// do sends a raw request; token "" sends no X-Vault-Token.
func do(t *testing.T, method, url, token, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(b)}
	if len(b) > 0 && method != http.MethodHead {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, url, b)
		}
	}
	return r
}

func keys(m map[string]any) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func wantErrors(t *testing.T, r reply, status int, errs ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.raw)
	}
	got, ok := r.body["errors"].([]any)
	if !ok {
		t.Fatalf("no errors array in %s", r.raw)
	}
	var gs []string
	for _, e := range got {
		gs = append(gs, e.(string))
	}
	if errs == nil {
		errs = []string{}
	}
	if gs == nil {
		gs = []string{}
	}
	if !reflect.DeepEqual(gs, errs) {
		t.Fatalf("errors %q, want %q", gs, errs)
	}
}

func TestAuthAndRouting(t *testing.T) {
	t.Parallel()
	f := start(t)
	a := f.vt.Addr()
	tests := []struct {
		name, method, path, token string
		status                    int
		errs                      []string
	}{
		{"no token", "GET", "/v1/database/creds/shop_read", "", 403, []string{"permission denied"}},
		{"bad token", "GET", "/v1/database/creds/shop_read", "hvs.wrong", 403, []string{"permission denied"}},
		{"no token revoke", "PUT", "/v1/sys/leases/revoke", "", 403, []string{"permission denied"}},
		{"unknown path", "GET", "/v1/secret/data/x", f.vt.Token, 404, nil},
		{"not v1", "GET", "/v2/database/creds/shop_read", f.vt.Token, 404, nil},
		{"role with slash", "GET", "/v1/database/creds/shop_read/x", f.vt.Token, 404, nil},
		{"unknown role", "GET", "/v1/database/creds/nope", f.vt.Token, 400, []string{"unknown role: nope"}},
		{"post creds", "POST", "/v1/database/creds/shop_read", f.vt.Token, 405, []string{"unsupported operation"}},
		{"get revoke", "GET", "/v1/sys/leases/revoke", f.vt.Token, 405, []string{"unsupported operation"}},
		{"revoke without id", "PUT", "/v1/sys/leases/revoke", f.vt.Token, 400, []string{"lease_id must be specified"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErrors(t, do(t, tc.method, a+tc.path, tc.token, ""), tc.status, tc.errs...)
		})
	}
	if n := len(f.vt.Leases()); n != 0 {
		t.Fatalf("refused requests made %d lease(s)", n)
	}
}

func TestHealthAndDown(t *testing.T) {
	t.Parallel()
	f := start(t)
	a := f.vt.Addr()
	r := do(t, "GET", a+"/v1/sys/health", "", "")
	if r.status != 200 || r.body["initialized"] != true || r.body["sealed"] != false || r.body["standby"] != false {
		t.Fatalf("health: %d %s", r.status, r.raw)
	}
	for _, k := range []string{"version", "cluster_name", "cluster_id", "server_time_utc"} {
		if _, ok := r.body[k]; !ok {
			t.Errorf("health lacks %q: %s", k, r.raw)
		}
	}
	f.vt.SetDown(true)
	if r := do(t, "GET", a+"/v1/sys/health", "", ""); r.status != 503 || r.body["sealed"] != true {
		t.Fatalf("health while down: %d %s", r.status, r.raw)
	}
	wantErrors(t, do(t, "GET", a+"/v1/database/creds/shop_read", f.vt.Token, ""), 503, "Vault is sealed")
	wantErrors(t, do(t, "PUT", a+"/v1/sys/leases/revoke", f.vt.Token, `{"lease_id":"x"}`), 503, "Vault is sealed")
	if n := len(f.vt.Leases()); n != 0 {
		t.Fatalf("lease made while down")
	}
	f.vt.SetDown(false)
	if r := do(t, "HEAD", a+"/v1/sys/health", "", ""); r.status != 200 {
		t.Fatalf("HEAD health after SetDown(false): %d", r.status)
	}
}

func TestCredsEnvelopeAndRevoke(t *testing.T) {
	t.Parallel()
	f := start(t)
	a := f.vt.Addr()
	r := do(t, "GET", a+"/v1/database/creds/shop_write", f.vt.Token, "")
	if r.status != 200 {
		t.Fatalf("creds: %d %s", r.status, r.raw)
	}
	want := []string{"auth", "data", "lease_duration", "lease_id", "mount_type", "renewable", "request_id", "warnings", "wrap_info"}
	if got := keys(r.body); !reflect.DeepEqual(got, want) {
		t.Fatalf("envelope keys %v, want %v", got, want)
	}
	for _, k := range []string{"auth", "warnings", "wrap_info"} {
		if r.body[k] != nil {
			t.Errorf("%s = %v, want null", k, r.body[k])
		}
	}
	lease, _ := r.body["lease_id"].(string)
	if !strings.HasPrefix(lease, "database/creds/shop_write/") || len(lease) <= len("database/creds/shop_write/") {
		t.Fatalf("lease_id %q", lease)
	}
	if r.body["renewable"] != true || r.body["lease_duration"] != float64(900) {
		t.Errorf("renewable %v lease_duration %v, want true and 900", r.body["renewable"], r.body["lease_duration"])
	}
	if id, _ := r.body["request_id"].(string); len(id) != 36 {
		t.Errorf("request_id %q is not a UUID", id)
	}
	data := r.body["data"].(map[string]any)
	user, pw := data["username"].(string), data["password"].(string)
	// The credential is a real role.
	cfg, _ := pgx.ParseConfig(f.dsn)
	cfg.User, cfg.Password = user, pw
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("login with issued credential: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "INSERT INTO "+credtest.Table+" (name) VALUES ('via-vault')"); err != nil {
		t.Fatalf("write credential INSERT: %v", err)
	}
	if got := f.vt.Leases(); !reflect.DeepEqual(got, []string{lease}) {
		t.Fatalf("Leases() = %v, want [%s]", got, lease)
	}
	// Revoke: 204, role gone, session ended; again: 204.
	for i := 0; i < 2; i++ {
		r := do(t, "PUT", a+"/v1/sys/leases/revoke", f.vt.Token, `{"lease_id":"`+lease+`"}`)
		if r.status != 204 || r.raw != "" {
			t.Fatalf("revoke #%d: %d %q", i+1, r.status, r.raw)
		}
	}
	if _, err := conn.Exec(t.Context(), "SELECT 1"); err == nil {
		t.Fatalf("session survived revoke")
	}
	if _, err := pgx.ConnectConfig(t.Context(), cfg); err == nil {
		t.Fatalf("login after revoke succeeded")
	}
	if n := len(f.vt.Leases()); n != 0 {
		t.Fatalf("lease still registered after revoke")
	}
	// Calls are recorded without tokens or bodies.
	calls := f.vt.Calls()
	if len(calls) != 3 || calls[0].Path != "/v1/database/creds/shop_write" || calls[0].Status != 200 || calls[1].Status != 204 {
		t.Fatalf("Calls() = %+v", calls)
	}
	if dump, _ := json.Marshal(calls); strings.Contains(string(dump), f.vt.Token) || strings.Contains(string(dump), pw) {
		t.Fatalf("Calls() leaks a token or password: %s", dump)
	}
}

func TestRevokePrefixAndURLForm(t *testing.T) {
	t.Parallel()
	f := start(t)
	a := f.vt.Addr()
	var leases []string
	for _, role := range []string{"shop_read", "shop_read", "shop_write"} {
		r := do(t, "GET", a+"/v1/database/creds/"+role, f.vt.Token, "")
		if r.status != 200 {
			t.Fatalf("creds: %d %s", r.status, r.raw)
		}
		leases = append(leases, r.body["lease_id"].(string))
	}
	if r := do(t, "POST", a+"/v1/sys/leases/revoke-prefix/database/creds/shop_read", f.vt.Token, ""); r.status != 204 {
		t.Fatalf("revoke-prefix: %d %s", r.status, r.raw)
	}
	if got := f.vt.Leases(); !reflect.DeepEqual(got, []string{leases[2]}) {
		t.Fatalf("after revoke-prefix shop_read: %v, want only %s", got, leases[2])
	}
	if r := do(t, "PUT", a+"/v1/sys/leases/revoke/"+leases[2], f.vt.Token, ""); r.status != 204 {
		t.Fatalf("revoke by URL: %d %s", r.status, r.raw)
	}
	if n := len(f.vt.Leases()); n != 0 {
		t.Fatalf("%d lease(s) left", n)
	}
}

func TestResponseWrapping(t *testing.T) {
	t.Parallel()
	f := start(t)
	a := f.vt.Addr()
	r := do(t, "GET", a+"/v1/database/creds/shop_read", f.vt.Token, "", "X-Vault-Wrap-TTL", "120")
	if r.status != 200 || r.body["data"] != nil || r.body["lease_id"] != "" {
		t.Fatalf("wrapped creds must carry no data or lease: %d %s", r.status, r.raw)
	}
	wi, ok := r.body["wrap_info"].(map[string]any)
	if !ok {
		t.Fatalf("no wrap_info: %s", r.raw)
	}
	if got := keys(wi); !reflect.DeepEqual(got, []string{"accessor", "creation_path", "creation_time", "token", "ttl", "wrapped_accessor"}) {
		t.Fatalf("wrap_info keys %v", got)
	}
	if wi["ttl"] != float64(120) || wi["creation_path"] != "database/creds/shop_read" {
		t.Fatalf("wrap_info %v", wi)
	}
	if _, err := time.Parse(time.RFC3339Nano, wi["creation_time"].(string)); err != nil {
		t.Fatalf("creation_time: %v", err)
	}
	token := wi["token"].(string)
	// A wrapping token is not a Vault token for anything else.
	wantErrors(t, do(t, "GET", a+"/v1/database/creds/shop_read", token, ""), 403, "permission denied")
	// Body form with a caller token that may not unwrap: refused, token not consumed.
	wantErrors(t, do(t, "PUT", a+"/v1/sys/wrapping/unwrap", "hvs.other", `{"token":"`+token+`"}`), 403, "permission denied")
	// Unwrap with the wrapping token as the client token.
	u := do(t, "PUT", a+"/v1/sys/wrapping/unwrap", token, "")
	if u.status != 200 {
		t.Fatalf("unwrap: %d %s", u.status, u.raw)
	}
	lease, _ := u.body["lease_id"].(string)
	data, _ := u.body["data"].(map[string]any)
	if !strings.HasPrefix(lease, "database/creds/shop_read/") || data["username"] == nil || data["password"] == nil || u.body["wrap_info"] != nil {
		t.Fatalf("unwrapped envelope: %s", u.raw)
	}
	// Single use, in both forms.
	wantErrors(t, do(t, "PUT", a+"/v1/sys/wrapping/unwrap", token, ""), 400, "wrapping token is not valid or does not exist")
	wantErrors(t, do(t, "POST", a+"/v1/sys/wrapping/unwrap", f.vt.Token, `{"token":"`+token+`"}`), 400, "wrapping token is not valid or does not exist")
	// The lease behind the wrapped response is real and revocable.
	if got := f.vt.Leases(); !reflect.DeepEqual(got, []string{lease}) {
		t.Fatalf("Leases() = %v", got)
	}
	// Malformed TTLs.
	for _, ttl := range []string{"soon", "0", "500ms"} {
		r := do(t, "GET", a+"/v1/database/creds/shop_read", f.vt.Token, "", "X-Vault-Wrap-TTL", ttl)
		if r.status != 400 {
			t.Errorf("wrap TTL %q: %d %s, want 400", ttl, r.status, r.raw)
		}
	}
	// sys/wrapping/wrap needs a TTL.
	if r := do(t, "POST", a+"/v1/sys/wrapping/wrap", f.vt.Token, `{"a":"b"}`); r.status != 400 {
		t.Errorf("wrap without TTL: %d %s", r.status, r.raw)
	}
	r = do(t, "POST", a+"/v1/sys/wrapping/wrap", f.vt.Token, `{"a":"b"}`, "X-Vault-Wrap-TTL", "1m")
	if r.status != 200 || r.body["wrap_info"].(map[string]any)["creation_path"] != "sys/wrapping/wrap" || r.body["wrap_info"].(map[string]any)["ttl"] != float64(60) {
		t.Fatalf("wrap: %d %s", r.status, r.raw)
	}
}

func TestCleanupRevokesOutstandingLeases(t *testing.T) {
	t.Parallel()
	var user string
	var dsn string
	t.Run("issue and forget", func(t *testing.T) {
		f := start(t)
		dsn = f.dsn
		r := do(t, "GET", f.vt.Addr()+"/v1/database/creds/shop_read", f.vt.Token, "")
		if r.status != 200 {
			t.Fatalf("creds: %d %s", r.status, r.raw)
		}
		user = r.body["data"].(map[string]any)["username"].(string)
	})
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("role %s outlived the double's cleanup", user)
	}
}
