package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// factory is the wiring the proxy's engine table needs for http grants; the
// rules and JSON fields would come from the grant's policy.
func factory(rules []httprule.Rule, fields []string) session.Factory {
	return func(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
		gd, err := httprule.New(httprule.Config{Rules: rules, Access: g.Guard.Access})
		if err != nil {
			return nil, err
		}
		m, err := mask.New(mask.Config{Detectors: g.Mask.Detectors})
		if err != nil {
			return nil, err
		}
		return httpengine.New(httpengine.Config{Grant: g, Guard: gd, Masker: m, Recorder: rec, Logger: log, MaskJSONFields: fields})
	}
}

func TestExecThroughSession(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	for i, c := range []struct {
		op, status, want string
	}{
		{"GET /v1/users", "result", `"email":"********"`},
		{"DELETE /v1/users", "error", "DELETE is not allowed on a read grant"},
		{"GET /v1/admin/keys", "error", "matches rule \"deny * /v1/admin/**\""},
	} {
		dir := t.TempDir()
		g := &spec.Grant{ID: fmt.Sprintf("g-exec-%d", i), Mode: spec.Exec, Operation: c.op,
			Target:     spec.Target{Name: "config-api", Protocol: spec.HTTP, Address: up.srv.URL},
			Deadline:   time.Now().Add(time.Minute),
			Credential: spec.Credential{Token: spec.WireSecret(apiToken), LeaseID: "kv:secret/config-api#1"},
			Guard:      spec.Guard{Access: spec.Read},
			Mask:       spec.Mask{Detectors: []string{"all"}},
			Record:     spec.Record{Dir: dir},
		}
		var status bytes.Buffer
		err := session.Run(context.Background(), session.Config{Grant: g, Status: &status,
			Engines: map[spec.Protocol]session.Factory{spec.HTTP: factory(testRules(), []string{"$.users[*].email", "password"})}})
		if (c.status == "error") != (err != nil) {
			t.Fatalf("%s: Run = %v", c.op, err)
		}
		var got *spec.Status
		for _, line := range strings.Split(strings.TrimSpace(status.String()), "\n") {
			var st spec.Status
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatal(err)
			}
			if string(st.Type) == c.status {
				got = &st
			}
		}
		if got == nil {
			t.Fatalf("%s: no %s status in\n%s", c.op, c.status, status.String())
		}
		switch c.status {
		case "result":
			if got.Result.Tag != "HTTP 200" || !strings.Contains(got.Result.Output, c.want) {
				t.Fatalf("%s: result %+v", c.op, got.Result)
			}
			noSecrets(t, "exec status", status.String())
		case "error":
			if got.Code != spec.CodeBlocked || !strings.Contains(got.Error, c.want) {
				t.Fatalf("%s: error %+v", c.op, got)
			}
		}
		_, evs, err := record.ReadFile(strings.TrimSpace(lastRecording(t, status.String())))
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) < 3 || evs[len(evs)-1].Type != record.Ended {
			t.Fatalf("%s: recording has %d events", c.op, len(evs))
		}
	}
}

func lastRecording(t *testing.T, status string) string {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(status), "\n") {
		var st spec.Status
		if json.Unmarshal([]byte(line), &st) == nil && st.Type == spec.StatusExit {
			return st.Recording
		}
	}
	t.Fatal("no exit status")
	return ""
}
