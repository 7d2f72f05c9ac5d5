package vaultlease_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/internal/vaultlease"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestMap(t *testing.T) {
	t.Parallel()
	m := vaultlease.Mapper{Prefix: "kube", NoRole: func(msg string) bool { return strings.Contains(msg, "does not exist") }}
	resp := func(code int, msg string) error { return &api.ResponseError{StatusCode: code, Errors: []string{msg}} }
	tests := []struct {
		name   string
		m      vaultlease.Mapper
		err    error
		is     error
		prefix string
	}{
		{"403 denied", m, resp(403, "permission denied"), credentials.ErrDenied, "kube: op: "},
		{"404 no role", m, resp(404, ""), credentials.ErrNoRole, "kube: op: "},
		{"400 NoRole", m, resp(400, `role "x" does not exist`), credentials.ErrNoRole, "kube: op: "},
		{"400 without NoRole", vaultlease.Mapper{Prefix: "kv"}, resp(400, `role "x" does not exist`), nil, "kv: op: 400 "},
		{"412 unavailable", m, resp(412, ""), credentials.ErrUnavailable, "kube: op: "},
		{"429 unavailable", m, resp(429, ""), credentials.ErrUnavailable, "kube: op: "},
		{"503 unavailable", m, resp(503, "sealed"), credentials.ErrUnavailable, "kube: op: "},
		{"transport", m, &url.Error{Op: "Get", URL: "http://x", Err: errors.New("refused")}, credentials.ErrUnavailable, "kube: op: "},
		{"deadline", m, context.DeadlineExceeded, credentials.ErrUnavailable, "kube: op: "},
		{"canceled is not unavailable", m, context.Canceled, context.Canceled, "kube: op: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.m.Map("op", tc.err)
			if !strings.HasPrefix(got.Error(), tc.prefix) {
				t.Errorf("Map = %q, want prefix %q", got, tc.prefix)
			}
			for _, s := range []error{credentials.ErrDenied, credentials.ErrNoRole, credentials.ErrUnavailable} {
				if want := s == tc.is; errors.Is(got, s) != want {
					t.Errorf("Map = %q: errors.Is(%v) = %v, want %v", got, s, !want, want)
				}
			}
			if tc.is != nil && !errors.Is(got, tc.is) {
				t.Errorf("Map = %q, want it to wrap %v", got, tc.is)
			}
		})
	}
}

func TestChecks(t *testing.T) {
	t.Parallel()
	m := vaultlease.Mapper{Prefix: "vault"}
	for _, tc := range []struct {
		mount, want, err string
	}{
		{"", "database", ""},
		{"/db/x/", "db/x", ""},
		{"db/../sys", "", "must be a path"},
		{"db/./x", "", "must be a path"},
		{"a b", "", "must be a path"},
	} {
		got, err := m.CheckMount(tc.mount, "database")
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), "vault: Mount") || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("CheckMount(%q) = %v, want %q", tc.mount, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CheckMount(%q) = %q, %v, want %q", tc.mount, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		roles map[spec.Access]string
		err   string
	}{
		{map[spec.Access]string{spec.Read: "r"}, ""},
		{nil, "Roles is empty"},
		{map[spec.Access]string{spec.AccessNone: "r"}, "not read, write or admin"},
		{map[spec.Access]string{spec.Read: ".."}, "must match"},
		{map[spec.Access]string{spec.Read: "../../sys/leases"}, "must match"},
	} {
		err := m.CheckRoles(tc.roles)
		if got := fmt.Sprint(err); tc.err == "" && err != nil || tc.err != "" && !strings.Contains(got, tc.err) {
			t.Errorf("CheckRoles(%v) = %v, want %q", tc.roles, err, tc.err)
		}
	}
	for _, tc := range []struct {
		secret *api.Secret
		err    string
	}{
		{&api.Secret{LeaseID: "db/creds/r/1"}, ""},
		{&api.Secret{LeaseID: "db/creds/r/1", WrapInfo: &api.SecretWrapInfo{Token: "w"}}, "came back wrapped"},
		{&api.Secret{}, "refusing a token that cannot be revoked"},
	} {
		err := m.CheckLease("op", tc.secret, "token")
		if got := fmt.Sprint(err); tc.err == "" && err != nil || tc.err != "" && !strings.Contains(got, tc.err) {
			t.Errorf("CheckLease(%+v) = %v, want %q", tc.secret, err, tc.err)
		}
	}
}
