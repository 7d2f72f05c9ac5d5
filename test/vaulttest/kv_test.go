package vaulttest_test

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/test/vaulttest"
)

func startKV(t *testing.T) *vaulttest.Server {
	t.Helper()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return vaulttest.Start(t, vaulttest.Config{Now: func() time.Time { return now },
		KV: map[string]map[string]map[string]any{"secret": {"config-api/reader": {"token": "tok-1", "n": 3}}}})
}

func TestKVReadEnvelope(t *testing.T) {
	t.Parallel()
	vt := startKV(t)
	r := do(t, http.MethodGet, vt.Addr()+"/v1/secret/data/config-api/reader", vt.Token, "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	want := []string{"auth", "data", "lease_duration", "lease_id", "mount_type", "renewable", "request_id", "warnings", "wrap_info"}
	if got := keys(r.body); !reflect.DeepEqual(got, want) {
		t.Fatalf("envelope keys %v, want %v", got, want)
	}
	if r.body["lease_id"] != "" || r.body["renewable"] != false || r.body["lease_duration"] != float64(0) || r.body["mount_type"] != "kv" {
		t.Fatalf("envelope %s", r.raw)
	}
	data := r.body["data"].(map[string]any)
	if got := keys(data); !reflect.DeepEqual(got, []string{"data", "metadata"}) {
		t.Fatalf("data keys %v", got)
	}
	if d := data["data"].(map[string]any); d["token"] != "tok-1" || d["n"] != float64(3) {
		t.Fatalf("data.data %v", d)
	}
	md := data["metadata"].(map[string]any)
	if got := keys(md); !reflect.DeepEqual(got, []string{"created_time", "custom_metadata", "deletion_time", "destroyed", "version"}) {
		t.Fatalf("metadata keys %v", got)
	}
	if md["version"] != float64(1) || md["deletion_time"] != "" || md["destroyed"] != false || md["created_time"] != "2026-05-01T12:00:00Z" {
		t.Fatalf("metadata %v", md)
	}
}

func TestKVVersionsDeleteDestroy(t *testing.T) {
	t.Parallel()
	vt := startKV(t)
	if v := vt.PutKV("secret", "config-api/reader", map[string]any{"token": "tok-2"}); v != 2 {
		t.Fatalf("PutKV version %d, want 2", v)
	}
	kv := vt.Client().KVv2("secret")
	ctx := t.Context()
	s, err := kv.Get(ctx, "config-api/reader")
	if err != nil || s.Data["token"] != "tok-2" || s.VersionMetadata.Version != 2 {
		t.Fatalf("Get latest = %+v, %v", s, err)
	}
	s, err = kv.GetVersion(ctx, "config-api/reader", 1)
	if err != nil || s.Data["token"] != "tok-1" || s.VersionMetadata.Version != 1 {
		t.Fatalf("GetVersion(1) = %+v, %v", s, err)
	}
	if _, err := kv.GetVersion(ctx, "config-api/reader", 9); !errors.Is(err, api.ErrSecretNotFound) {
		t.Fatalf("GetVersion(9) err %v, want ErrSecretNotFound", err)
	}
	if _, err := kv.Get(ctx, "config-api/nothing"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Fatalf("unknown path err %v", err)
	}
	wantErrors(t, do(t, http.MethodGet, vt.Addr()+"/v1/secret/data/config-api/nothing", vt.Token, ""), http.StatusNotFound)

	vt.DeleteKV("secret", "config-api/reader", 0)
	r := do(t, http.MethodGet, vt.Addr()+"/v1/secret/data/config-api/reader", vt.Token, "")
	if r.status != http.StatusNotFound {
		t.Fatalf("deleted version: status %d", r.status)
	}
	data := r.body["data"].(map[string]any)
	if data["data"] != nil || data["metadata"].(map[string]any)["deletion_time"] == "" {
		t.Fatalf("deleted version body %s", r.raw)
	}
	s, err = kv.Get(ctx, "config-api/reader")
	if err != nil || s.Data != nil || s.VersionMetadata.DeletionTime.IsZero() {
		t.Fatalf("client view of a deleted version: %+v, %v", s, err)
	}
	vt.DestroyKV("secret", "config-api/reader", 1)
	s, err = kv.GetVersion(ctx, "config-api/reader", 1)
	if err != nil || s.Data != nil || !s.VersionMetadata.Destroyed {
		t.Fatalf("client view of a destroyed version: %+v, %v", s, err)
	}
}

func TestKVAccessAndMethods(t *testing.T) {
	t.Parallel()
	vt := startKV(t)
	u := vt.Addr() + "/v1/secret/data/config-api/reader"
	wantErrors(t, do(t, http.MethodGet, u, "", ""), http.StatusForbidden, "permission denied")
	wantErrors(t, do(t, http.MethodGet, u, "hvs.wrong", ""), http.StatusForbidden, "permission denied")
	wantErrors(t, do(t, http.MethodPost, u, vt.Token, `{"data":{}}`), http.StatusMethodNotAllowed, "unsupported operation")
	wantErrors(t, do(t, http.MethodGet, u+"?version=x", vt.Token, ""), http.StatusBadRequest, "invalid version: x")
	wantErrors(t, do(t, http.MethodGet, vt.Addr()+"/v1/other/data/config-api/reader", vt.Token, ""), http.StatusNotFound)
	// A KV-only double has no database roles.
	wantErrors(t, do(t, http.MethodGet, vt.Addr()+"/v1/database/creds/x", vt.Token, ""), http.StatusBadRequest, "unknown role: x")

	// Response wrapping works for KV reads like for every secret.
	r := do(t, http.MethodGet, u, vt.Token, "", "X-Vault-Wrap-TTL", "60")
	wi, _ := r.body["wrap_info"].(map[string]any)
	if r.status != http.StatusOK || wi == nil || wi["creation_path"] != "secret/data/config-api/reader" || r.body["data"] != nil {
		t.Fatalf("wrapped read: %s", r.raw)
	}
	un := do(t, http.MethodPost, vt.Addr()+"/v1/sys/wrapping/unwrap", wi["token"].(string), "")
	if un.status != http.StatusOK || un.body["data"].(map[string]any)["data"].(map[string]any)["token"] != "tok-1" {
		t.Fatalf("unwrap: %s", un.raw)
	}
}

func TestKVConfigValidation(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"../x", "a//b", "a b", ""} {
		tb := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			vaulttest.Start(tb, vaulttest.Config{KV: map[string]map[string]map[string]any{"secret": {p: {"a": "b"}}}})
		}()
		if !tb.failed {
			t.Errorf("KV path %q accepted", p)
		}
	}
}

// fatalRecorder turns Fatal into a recorded failure plus a panic, so a test
// can check that Start refuses a config.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.failed = true
	panic("fatal")
}
