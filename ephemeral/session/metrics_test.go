package session_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// echoEngine echoes one line per connection and reports fixed guard and mask
// counts, like the postgres engine does.
type echoEngine struct{}

func (echoEngine) Serve(ctx context.Context, c net.Conn) error {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	_, err = io.WriteString(c, "echo "+line)
	return err
}

func (echoEngine) Exec(context.Context, string) (*spec.Result, error) { return &spec.Result{}, nil }
func (echoEngine) Verdicts() (uint64, uint64)                         { return 7, 2 }
func (echoEngine) MaskCounts() map[string]uint64                      { return map[string]uint64{"email": 5, "column": 1} }

func grantFor(t *testing.T, metricsAddr string, deadline time.Time) *spec.Grant {
	return &spec.Grant{ID: "g_metrics", Mode: spec.Session, Rule: "agents-read",
		Target:       spec.Target{Name: "db", Protocol: spec.Postgres, Address: "127.0.0.1:1", Database: "db"},
		ClientSecret: spec.NewSecret("s3cret").Wire(), Listen: "127.0.0.1:0", Deadline: deadline,
		Guard: spec.Guard{Access: spec.Read}, Record: spec.Record{Dir: t.TempDir()}, Metrics: metricsAddr}
}

// run serves g until its deadline or until the test cancels it.
func run(t *testing.T, g *spec.Grant) (<-chan spec.Status, <-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	statuses := make(chan spec.Status, 8)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var st spec.Status
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				statuses <- st
			}
		}
		close(statuses)
	}()
	go func() {
		err := session.Run(ctx, session.Config{Grant: g, Status: pw, Logger: slog.New(slog.DiscardHandler),
			Engines: map[spec.Protocol]session.Factory{spec.Postgres: func(*spec.Grant, *record.Recorder, *slog.Logger) (session.Engine, error) {
				return echoEngine{}, nil
			}}})
		pw.Close()
		done <- err
	}()
	return statuses, done, cancel
}

// A metrics address off loopback would publish rule names and grant ids to
// the network: the proxy refuses the grant before it listens.
func TestMetricsAddressMustBeLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:9464", "example.com:9464", "no-port"} {
		statuses, done, _ := run(t, grantFor(t, addr, time.Now().Add(time.Minute)))
		st := <-statuses
		if st.Type != spec.StatusError || st.Code != spec.CodeBadSpec || !strings.Contains(st.Error, "metrics address") {
			t.Errorf("%s: first status %+v, want a bad_spec error about the metrics address", addr, st)
		}
		if err := <-done; err == nil {
			t.Errorf("%s: Run succeeded", addr)
		}
	}
}

func TestMetricsServedWhileTheSessionRuns(t *testing.T) {
	t.Parallel()
	statuses, done, stop := run(t, grantFor(t, "127.0.0.1:0", time.Now().Add(time.Minute)))
	ready := <-statuses
	if ready.Type != spec.StatusReady || ready.Metrics == "" {
		t.Fatalf("ready status %+v lacks the metrics address", ready)
	}
	c, err := net.Dial("tcp", ready.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "echo hello\n" {
		t.Fatalf("echo: %q %v", got, err)
	}
	c.Close()

	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + ready.Metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
		// The connection gauge drops when Serve returns, just after the echo.
		if strings.Contains(body, `jitgate_proxy_client_connections{grant="g_metrics"} 0`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		`jitgate_proxy_statements_total{grant="g_metrics",rule="agents-read",verdict="allowed"} 7`,
		`jitgate_proxy_statements_total{grant="g_metrics",rule="agents-read",verdict="blocked"} 2`,
		`jitgate_proxy_values_masked_total{detector="email",grant="g_metrics"} 5`,
		`jitgate_proxy_values_masked_total{detector="column",grant="g_metrics"} 1`,
		`jitgate_proxy_bytes_relayed_total{direction="from_client",grant="g_metrics"} 6`,
		`jitgate_proxy_bytes_relayed_total{direction="to_client",grant="g_metrics"} 11`,
		`jitgate_proxy_client_connections_total{grant="g_metrics"} 1`,
		`jitgate_proxy_client_connections{grant="g_metrics"} 0`,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("session ended with %v", err)
	}
	if _, err := http.Get("http://" + ready.Metrics + "/metrics"); err == nil {
		t.Error("metrics still served after the proxy's session ended")
	}
}
