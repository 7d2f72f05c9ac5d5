package ssh_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	sshengine "github.com/jitgate/jitgate/ephemeral/engine/ssh"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

const awsKey = "AKIAIOSFODNN7EXAMPLE"

// secretOutput is ~100 KiB of command output with 40 cards spread over it
// (the stream masker sends it in many passes) and 3 AWS access keys.
func secretOutput() string {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "%s row %d card %s\n", strings.Repeat("x", 2500), i, card)
	}
	b.WriteString("keys " + awsKey + " " + awsKey + " " + awsKey + "\n")
	return b.String()
}

// waitFor polls cond until it holds or 10 s pass: a verdict is counted
// before the agent hears the reply, but output is counted as it is sent.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, got := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every verdict and every masked value counts exactly once, on the agent's
// connections and in Exec alike.
func TestCountersFollowTraffic(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	f := tg.plant(t, secretOutput())
	if a, b := p.eng.Verdicts(); a != 0 || b != 0 {
		t.Fatalf("fresh engine: verdicts %d/%d", a, b)
	}
	c := p.dial(t)

	// Allowed: the masked file, streamed.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("cat " + quote(f))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), card) || strings.Contains(string(out), awsKey) || strings.Count(string(out), "**** **** **** ****") != 40 {
		t.Fatalf("output not masked as expected (%d bytes)", len(out))
	}
	// Refused: an environment variable, then rm.
	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Setenv("LD_PRELOAD", "/tmp/evil.so"); err == nil {
		t.Fatal("env request accepted")
	}
	var ee *ssh.ExitError
	if err := s.Run("rm -rf /tmp/nothing-here"); !errors.As(err, &ee) || ee.ExitStatus() != 126 {
		t.Fatalf("rm: %v, want exit status 126", err)
	}
	// Refused: a local port forward and a shell on a non-interactive grant.
	if fc, err := c.Dial("tcp", "127.0.0.1:9"); err == nil {
		fc.Close()
		t.Fatal("port forward accepted")
	}
	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err == nil {
		t.Fatal("shell accepted on a non-interactive grant")
	}
	// Allowed: the same file through Exec.
	res, err := p.eng.Exec(t.Context(), "cat "+quote(f))
	if err != nil || strings.Contains(res.Output, card) {
		t.Fatalf("Exec: %v", err)
	}
	// Refused through Exec.
	if _, err := p.eng.Exec(t.Context(), "rm -rf /tmp/nothing-here"); err == nil {
		t.Fatal("Exec ran rm")
	}

	waitFor(t, "counters", func() (bool, string) {
		a, b := p.eng.Verdicts()
		m := p.eng.MaskCounts()
		got := fmt.Sprintf("verdicts %d allowed %d blocked, masked %v", a, b, m)
		return a == 2 && b == 5 && m[mask.DetectCreditCard] == 80 && m[mask.DetectAWSAccessKey] == 6 && len(m) == 2, got
	})
	// The recording agrees: one verdict event per counted verdict.
	var allowed, blocked uint64
	for _, ev := range p.events(t) {
		if ev.Type == record.Verdict && ev.Allowed != nil {
			if *ev.Allowed {
				allowed++
			} else {
				blocked++
			}
		}
	}
	if a, b := p.eng.Verdicts(); a != allowed || b != blocked {
		t.Fatalf("counted %d/%d verdicts, recorded %d/%d", a, b, allowed, blocked)
	}
}

// A grant without detectors reports no masked values at all.
func TestMaskCountsNilWithoutMasker(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{noMask: true})
	if m := p.eng.MaskCounts(); m != nil {
		t.Fatalf("MaskCounts = %v, want nil", m)
	}
}

// The session proxy serves the engine's counters on /metrics: a real sshd
// behind a real session proxy, one allowed and two refused requests, the
// file's secrets masked.
func TestMetricsScrapedFromSessionProxy(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	f := tg.plant(t, secretOutput())
	cred := tg.credential(t, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), nil)
	g := &spec.Grant{ID: "g-ssh-metrics-" + randHex(3), Mode: spec.Session, Rule: "ops-ssh",
		ClientSecret: spec.WireSecret("s3cret-" + randHex(8)), Listen: "127.0.0.1:0", Metrics: "127.0.0.1:0",
		Target:   spec.Target{Name: "box", Protocol: spec.SSH, Address: tg.srv.Addr, User: tg.srv.User, KnownHosts: []string{tg.srv.KnownHosts}},
		Deadline: time.Now().Add(time.Hour), Credential: cred, Guard: spec.Guard{Access: spec.Write},
		Mask: spec.Mask{Detectors: []string{"credit_card", "aws_access_key"}}, Record: spec.Record{Dir: t.TempDir()}}
	hostKey := make(chan ssh.PublicKey, 1)
	factory := func(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
		gd, err := shell.New(shell.Config{})
		if err != nil {
			return nil, err
		}
		mk, err := mask.New(mask.Config{Detectors: g.Mask.Detectors})
		if err != nil {
			return nil, err
		}
		eng, err := sshengine.New(sshengine.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec, Logger: log})
		if err == nil {
			hostKey <- eng.HostKey()
		}
		return eng, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := session.Run(ctx, session.Config{Grant: g, Status: pw, Engines: map[spec.Protocol]session.Factory{spec.SSH: factory}})
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var ready spec.Status
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &ready) == nil && ready.Type != "" {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if ready.Type != spec.StatusReady || ready.Metrics == "" {
		t.Fatalf("first status %+v, want ready with a metrics address", ready)
	}
	c, err := ssh.Dial("tcp", ready.Addr, &ssh.ClientConfig{User: g.ID, Auth: []ssh.AuthMethod{ssh.Password(string(g.ClientSecret))},
		HostKeyCallback: ssh.FixedHostKey(<-hostKey), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := c.NewSession()
	if out, err := s.Output("cat " + quote(f)); err != nil || strings.Contains(string(out), card) {
		t.Fatalf("cat: %v", err)
	}
	s, _ = c.NewSession()
	if err := s.Setenv("BASH_ENV", "/tmp/x"); err == nil {
		t.Fatal("env request accepted")
	}
	if err := s.Run("rm -rf /tmp/nothing-here"); err == nil {
		t.Fatal("rm ran")
	}

	want := []string{
		`jitgate_proxy_statements_total{grant="` + g.ID + `",rule="ops-ssh",verdict="allowed"} 1`,
		`jitgate_proxy_statements_total{grant="` + g.ID + `",rule="ops-ssh",verdict="blocked"} 2`,
		`jitgate_proxy_values_masked_total{detector="credit_card",grant="` + g.ID + `"} 40`,
		`jitgate_proxy_values_masked_total{detector="aws_access_key",grant="` + g.ID + `"} 3`,
	}
	waitFor(t, "metrics", func() (bool, string) {
		body := scrape(t, ready.Metrics)
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false, "lack " + w + " in\n" + grepMetrics(body)
			}
		}
		if strings.Contains(body, `detector="column"`) {
			return false, "a column series on an ssh proxy:\n" + grepMetrics(body)
		}
		return true, ""
	})
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("session ended with %v", err)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepMetrics keeps the jitgate_ lines of a scrape, for failure messages.
func grepMetrics(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "jitgate_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
