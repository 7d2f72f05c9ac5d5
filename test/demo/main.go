// Command demo is `make demo`: it starts a throw-away PostgreSQL, seeds a small
// shop, writes a demo policy, starts `jitgate dev`, and narrates what an AI agent
// can and cannot do through jitgate, running the real CLI for every step. It
// stops everything it started and leaves the data directory (recordings, audit
// log) in place for inspection.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
)

func main() {
	bin := flag.String("bin", "bin/jitgate", "the jitgate binary")
	dataDir := flag.String("data-dir", ".jitgate-demo", "where the demo keeps grants, audit log and recordings")
	flag.Parse()
	if err := run(*bin, *dataDir); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(bin, dataDir string) error {
	bin, _ = filepath.Abs(bin)
	dataDir, _ = filepath.Abs(dataDir)
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	ctx := context.Background()

	say("Starting a throw-away PostgreSQL 15 on loopback")
	pg, err := pgtest.StartServer()
	if err != nil {
		return err
	}
	defer pg.Stop()
	fmt.Printf("  postgres listening on %s\n", pg.Addr())
	if err := shopdb.Setup(ctx, pg); err != nil {
		return err
	}
	fmt.Println("  seeded databases shop and shop_test (users with emails, password hashes, card numbers; orders)")

	policyPath := filepath.Join(dataDir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(shopdb.PolicyFor(pg.Addr())), 0o600); err != nil {
		return err
	}
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	broker := "http://" + listen
	say("Starting jitgate dev (broker + DEV-ONLY OIDC issuer + bbolt store + local proxies)")
	fmt.Printf("$ jitgate dev --policy %s --listen %s --data-dir %s\n", rel(policyPath), listen, rel(dataDir))
	var devLog bytes.Buffer
	dev := exec.Command(bin, "dev", "--policy", policyPath, "--listen", listen, "--data-dir", dataDir, "--log-level", "warn")
	dev.Env = append(os.Environ(), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres"))
	dev.Stdout, dev.Stderr = &devLog, &devLog
	dev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dev.Start(); err != nil {
		return err
	}
	defer func() {
		_ = dev.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = dev.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-dev.Process.Pid, syscall.SIGKILL)
		}
	}()
	if err := waitHealthy(broker+"/healthz", 20*time.Second); err != nil {
		return fmt.Errorf("jitgate dev did not come up: %v\n%s", err, devLog.String())
	}
	env := append(os.Environ(), "JITGATE_BROKER="+broker)
	agentTok, err := output(env, bin, "dev", "token", "--sub", "agent-7", "--groups", "ai-agents", "--claim", "repository=acme/shop", "--claim", "ref=refs/pull/42/merge")
	if err != nil {
		return err
	}
	humanTok, err := output(env, bin, "dev", "token", "--sub", "alice", "--groups", "dba", "--claim", "email=alice@acme.example")
	if err != nil {
		return err
	}
	agent := append(append([]string{}, env...), "JITGATE_TOKEN="+agentTok)
	human := append(append([]string{}, env...), "JITGATE_TOKEN="+humanTok)
	fmt.Println("  the agent holds an OIDC token for agent-7 (group ai-agents); the approver alice is in group dba")

	say("1. The agent reads orders: rule agents-read-orders allows it")
	if code := show(agent, bin, "exec", "--target", "orders-db", "--sql", "SELECT id, item, amount FROM orders ORDER BY id"); code != 0 {
		return fmt.Errorf("read orders exited %d", code)
	}

	say("2. The agent reads users: emails, password hashes and card numbers come back masked")
	if code := show(agent, bin, "exec", "--target", "orders-db", "--sql", "SELECT id, name, email, password_hash, card_number FROM users ORDER BY id"); code != 0 {
		return fmt.Errorf("read users exited %d", code)
	}
	fmt.Println("  ...and a disguised read is masked too (the masker follows the column through the expression):")
	if code := show(agent, bin, "exec", "--target", "orders-db", "--sql", "SELECT name, encode(convert_to(card_number, 'UTF8'), 'base64') AS c FROM users ORDER BY id"); code != 0 {
		return fmt.Errorf("disguised read exited %d", code)
	}

	say("3. The agent tries DELETE FROM orders: refused before any credential is minted")
	if code := show(agent, bin, "exec", "--target", "orders-db", "--sql", "DELETE FROM orders"); code != 3 {
		return fmt.Errorf("DELETE should exit 3 (denied), got %d", code)
	}

	say("4. The agent asks to write to the test database: pending until a DBA approves")
	fmt.Println(`$ jitgate exec --target test-db --sql "INSERT INTO orders (user_id, item, amount) VALUES (2, 'nanosecond wire', 0.30)" --reason "PR #42 fixture"`)
	var execOut bytes.Buffer
	w := exec.Command(bin, "exec", "--target", "test-db", "--sql", "INSERT INTO orders (user_id, item, amount) VALUES (2, 'nanosecond wire', 0.30)", "--reason", "PR #42 fixture")
	w.Env, w.Stdout, w.Stderr = agent, &execOut, &execOut
	if err := w.Start(); err != nil {
		return err
	}
	id, err := waitPending(human, bin, 20*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Print(indent(execOut.String()))
	fmt.Println("  alice (group dba) sees the pending request and approves it:")
	if code := show(human, bin, "approve", id, "--reason", "fixture for PR 42 looks fine"); code != 0 {
		return fmt.Errorf("approve exited %d", code)
	}
	if err := w.Wait(); err != nil {
		fmt.Print(indent(execOut.String()))
		return fmt.Errorf("approved write failed: %v", err)
	}
	fmt.Println("  the waiting agent carried on:")
	fmt.Print(indent(execOut.String()))

	say("5. Evidence: the recording of the masked read, and the audit chain")
	grants, err := output(agent, bin, "grants", "list")
	if err != nil {
		return err
	}
	var list []struct {
		ID, Operation, Recording string
	}
	_ = json.Unmarshal([]byte(grants), &list)
	for _, g := range list {
		if strings.Contains(g.Operation, "password_hash") {
			show(env, bin, "replay", g.Recording)
		}
	}
	if code := show(env, bin, "audit", "verify", "--file", filepath.Join(dataDir, "audit.jsonl")); code != 0 {
		return fmt.Errorf("audit verify exited %d", code)
	}

	say("Done")
	fmt.Printf("  recordings: %s\n", rel(filepath.Join(dataDir, "recordings")))
	fmt.Printf("  audit log:  %s\n", rel(filepath.Join(dataDir, "audit.jsonl")))
	fmt.Printf("  grants:     %s (bbolt)\n", rel(filepath.Join(dataDir, "grants.db")))
	fmt.Println("  stopping jitgate dev and PostgreSQL")
	return nil
}

func say(s string) { fmt.Printf("\n\033[1m== %s\033[0m\n", s) }

// show prints and runs a jitgate command, returning its exit code.
func show(env []string, bin string, args ...string) int {
	fmt.Println("$ jitgate " + quoteArgs(args))
	var out bytes.Buffer
	c := exec.Command(bin, args...)
	c.Env, c.Stdout, c.Stderr = env, &out, &out
	err := c.Run()
	fmt.Print(indent(out.String()))
	if ee, ok := err.(*exec.ExitError); ok {
		fmt.Printf("  (exit %d)\n", ee.ExitCode())
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Println("  error:", err)
		return -1
	}
	return 0
}

func output(env []string, bin string, args ...string) (string, error) {
	c := exec.Command(bin, args...)
	c.Env = env
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("jitgate %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func waitPending(env []string, bin string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		out, err := output(env, bin, "grants", "list", "--state", "pending")
		if err == nil {
			var gs []struct{ ID string }
			if json.Unmarshal([]byte(out), &gs) == nil && len(gs) > 0 {
				return gs[0].ID, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("no pending grant appeared")
}

func waitHealthy(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ") + "\n"
}

func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " *'\"(),;") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func rel(p string) string {
	wd, _ := os.Getwd()
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
