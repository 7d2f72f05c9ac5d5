package credentials_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// scripted fails with the given errors in order, then succeeds.
type scripted struct {
	errs  []error
	calls int
	// cancel, when set, is called on the first Revoke.
	cancel func()
}

func (s *scripted) Issue(context.Context, credentials.Request) (spec.Credential, error) {
	return spec.Credential{}, errors.New("not used")
}

func (s *scripted) Revoke(ctx context.Context, _ spec.Credential) error {
	s.calls++
	if s.cancel != nil {
		s.cancel()
	}
	if s.calls <= len(s.errs) {
		return s.errs[s.calls-1]
	}
	return nil
}

func TestRevokeWithRetry(t *testing.T) {
	t.Parallel()
	down := fmt.Errorf("dial: %w", credentials.ErrUnavailable)
	denied := fmt.Errorf("403: %w", credentials.ErrDenied)
	cred := spec.Credential{LeaseID: "lease-1"}
	tests := []struct {
		name      string
		errs      []error
		attempts  int
		wantCalls int
		wantErr   error
	}{
		{"first try", nil, 3, 1, nil},
		{"third try", []error{down, down}, 5, 3, nil},
		{"all fail, last error returned", []error{down, down, denied}, 3, 3, credentials.ErrDenied},
		{"zero attempts means one", []error{down}, 0, 1, credentials.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &scripted{errs: tc.errs}
			err := credentials.RevokeWithRetry(t.Context(), s, cred, tc.attempts, time.Microsecond)
			if s.calls != tc.wantCalls {
				t.Errorf("Revoke called %d times, want %d", s.calls, tc.wantCalls)
			}
			if tc.wantErr == nil && err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "lease-1") {
				t.Errorf("error %q does not name the lease", err)
			}
		})
	}
}

func TestRevokeWithRetryStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	down := fmt.Errorf("dial: %w", credentials.ErrUnavailable)
	s := &scripted{errs: []error{down, down, down, down}, cancel: cancel}
	// An hour between attempts: only ctx can end this quickly.
	err := credentials.RevokeWithRetry(ctx, s, spec.Credential{LeaseID: "l"}, 4, time.Hour)
	if s.calls != 1 {
		t.Fatalf("Revoke called %d times after ctx ended, want 1", s.calls)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, credentials.ErrUnavailable) {
		t.Fatalf("got %v, want both the last error and context.Canceled", err)
	}
	// Already-ended ctx: no call at all on retries, but the first attempt is not made either.
	s2 := &scripted{}
	if err := credentials.RevokeWithRetry(ctx, s2, spec.Credential{}, 3, 0); !errors.Is(err, context.Canceled) || s2.calls != 0 {
		t.Fatalf("ended ctx: got %v after %d calls, want context.Canceled and no call", err, s2.calls)
	}
}

func TestRequestValidate(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		req  credentials.Request
		want string
	}{
		{"ok", credentials.Request{GrantID: "g", Access: spec.Read, Expires: now.Add(time.Second)}, ""},
		{"no grant", credentials.Request{Access: spec.Read, Expires: now.Add(time.Hour)}, "no grant id"},
		{"no access", credentials.Request{GrantID: "g", Expires: now.Add(time.Hour)}, "no role"},
		{"no expiry", credentials.Request{GrantID: "g", Access: spec.Read}, "no expiry"},
		{"expires now", credentials.Request{GrantID: "g", Access: spec.Read, Expires: now}, "not in the future"},
	}
	for _, tc := range tests {
		err := tc.req.Validate(now)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := (credentials.Request{GrantID: "g", Expires: now.Add(time.Hour)}).Validate(now); !errors.Is(err, credentials.ErrNoRole) {
		t.Errorf("AccessNone: %v does not wrap ErrNoRole", err)
	}
}

func TestRedactedNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	cred := spec.Credential{
		Username: "jg_g1", Password: "pw-PLANTED-1", PrivateKey: "key-PLANTED-2", Token: "tok-PLANTED-3",
		Certificate: "ssh-ed25519-cert-v01@openssh.com AAAA", LeaseID: "local:postgres:jg_g1",
		Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	r := credentials.Redacted(cred)
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	nested, _ := json.Marshal(struct{ C credentials.Redacted }{r})
	var logBuf strings.Builder
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("issued", "credential", r)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("issued", "credential", r)
	out := strings.Join([]string{
		fmt.Sprintf("%v|%+v|%#v|%s|%q|%x", r, r, r, r, r, r),
		fmt.Sprint(r), fmt.Sprintf("%v", []credentials.Redacted{r}), fmt.Sprintf("%+v", &r),
		string(js), string(nested), logBuf.String(),
	}, "\n")
	if strings.Contains(out, "PLANTED") {
		t.Fatalf("a secret field leaked:\n%s", out)
	}
	for _, want := range []string{"jg_g1", "local:postgres:jg_g1", "2030-01-01"} {
		if !strings.Contains(string(js), want) || !strings.Contains(fmt.Sprint(r), want) || !strings.Contains(logBuf.String(), want) {
			t.Errorf("Redacted output lost %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(fmt.Sprintf("%#v", r), "credentials.Redacted{") {
		t.Errorf("%%#v = %q", fmt.Sprintf("%#v", r))
	}
}
