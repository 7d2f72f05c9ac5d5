package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
	"github.com/jitgate/jitgate/ephemeral/record/sign/kmssign"
	"github.com/jitgate/jitgate/test/awstest"
	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/stack"
)

// TestSSHShellReplay: an admin opens an interactive shell on a real OpenSSH
// server with the real ssh client (a pty, through `jitgate connect`), types
// commands, one of which prints a card number. `jitgate recording verify`
// says the recording and its terminal cast verify, and `jitgate replay`
// plays back exactly what the client's terminal showed (masked), with no
// clipboard or title escape sequences.
func TestSSHShellReplay(t *testing.T) {
	dir := t.TempDir()
	srv, caFile := stack.SSHTarget(t, dir, map[string]string{"card.txt": "card 4111 1111 1111 1111 on file\n"})
	iss := stack.StartIssuer(t)
	policyText := fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %s, audience: jitgate}
targets:
%s
rules:
  - name: admins-shell
    when: '"admins" in identity.groups'
    targets: [box]
    access: admin
`, iss.URL, stack.SSHPolicyTarget("box", srv, caFile, "commands: {interactive: true}"))
	dataDir := filepath.Join(dir, "data")
	envv := serve(t, writePolicy(t, dir, policyText), dataDir, iss.Env(), "broker", "serve", "--log-level", "warn").env
	tok := iss.Token(t, "alice", "admins")
	run := func(stdin string, args ...string) (string, string, int) { return cli(t, envv, tok, stdin, args...) }

	// -tt: a pty even though stdin is a pipe, so sshd runs an interactive
	// login shell and the proxy records it as a terminal session.
	sshCmd := `ssh -tt -F /dev/null -o UserKnownHostsFile="$JITGATE_KNOWN_HOSTS" -o StrictHostKeyChecking=yes ` +
		`-o PreferredAuthentications=password -o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1 -o LogLevel=error ` +
		`-p "$JITGATE_PORT" "$JITGATE_USER@$JITGATE_HOST"`
	typed := "echo marker-$((6*7))\nprintf 'osc\\033]52;c;ZXZpbA==\\007-end\\n'\ncat card.txt\nexit\n"
	client, errOut, code := run(typed, "connect", "--target", "box", "--access", "admin", "--quiet", "--", "sh", "-c", sshCmd)
	if code != 0 || !strings.Contains(client, "marker-42") || !strings.Contains(client, "on file") {
		time.Sleep(time.Second)
		m, _ := filepath.Glob(filepath.Join(dataDir, "*", "*.jgr"))
		for _, p := range m {
			out, errOut, _ := run("", "replay", p, "--transcript-only")
			t.Logf("recording %s:\n%s%s", p, out, errOut)
		}
		t.Fatalf("ssh shell through connect: exit %d\nstdout %q\nstderr %s", code, client, errOut)
	}
	if strings.Contains(strings.ReplaceAll(client, " ", ""), "4111111111111111") {
		t.Fatalf("the client saw the card number unmasked:\n%q", client)
	}

	// The proxy stores its recording before it exits; the broker may still be
	// reaping it when connect returns.
	var rec string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && rec == "" {
		m, _ := filepath.Glob(filepath.Join(dataDir, "recordings", "*.jgr"))
		casts, _ := filepath.Glob(filepath.Join(dataDir, "recordings", "*.cast"))
		if len(m) == 1 && len(casts) == 1 {
			rec = m[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec == "" {
		t.Fatal("no recording with one terminal cast was stored")
	}
	id := strings.TrimSuffix(filepath.Base(rec), ".jgr")

	out, errOut, code := run("", "recording", "verify", id, "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "ok, grant "+id) || !strings.Contains(out, "matches its seal") {
		t.Fatalf("recording verify: exit %d\n%s\n%s", code, out, errOut)
	}

	replayed, errOut, code := run("", "replay", id, "--data-dir", dataDir, "--no-wait")
	if code != 0 || !strings.Contains(errOut, "verified:") || !strings.Contains(errOut, "── terminal "+id+".") {
		t.Fatalf("replay: exit %d\nstderr %s", code, errOut)
	}
	// The terminal part of the replay is what the client's terminal showed,
	// minus the escape strings the player removes.
	var z asciicast.Sanitizer
	want := z.Clean(client)
	if !strings.HasSuffix(replayed, want) {
		t.Errorf("the replay does not end with what the client saw\nclient (sanitized): %q\nreplay: %q", want, replayed)
	}
	if strings.Contains(replayed, "\x1b]52") || !strings.Contains(replayed, "osc-end") {
		t.Errorf("the replay keeps the OSC 52 clipboard write or lost its text: %q", replayed)
	}
	if strings.Contains(strings.ReplaceAll(replayed, " ", ""), "4111111111111111") {
		t.Errorf("the replay shows the card number")
	}
	// The transcript names the shell and its recorded cast.
	if !strings.Contains(replayed, "shell") || !strings.Contains(replayed, id+".") {
		t.Errorf("the transcript does not name the shell and its cast:\n%s", replayed)
	}

	// --step stops at every Enter the user sent: once per recorded input
	// event holding one (the pipe may deliver several lines in one read).
	castPaths, _ := filepath.Glob(filepath.Join(dataDir, "recordings", id+".*.cast"))
	f, err := os.Open(castPaths[0])
	if err != nil {
		t.Fatal(err)
	}
	_, castEvs, err := asciicast.Read(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	enters := 0
	for _, e := range castEvs {
		if e.Code == asciicast.Input && strings.ContainsAny(e.Data, "\r\n") {
			enters++
		}
	}
	_, errOut, code = run(strings.Repeat("\n", enters), "replay", id, "--data-dir", dataDir, "--no-wait", "--step")
	if n := strings.Count(errOut, "next command"); code != 0 || n != enters || enters == 0 {
		t.Errorf("--step: exit %d, %d stops, want %d (one per recorded Enter)\n%s", code, n, enters, errOut)
	}
	// A viewer who closes stdin ends the playback.
	if _, errOut, code = run("", "replay", id, "--data-dir", dataDir, "--no-wait", "--step"); code != 1 || !strings.Contains(errOut, "step: EOF") {
		t.Errorf("--step with stdin closed: exit %d, %s", code, errOut)
	}
	// --speed plays at a pace, and finishes.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, jitgateBin, "replay", id, "--data-dir", dataDir, "--speed", "50", "--idle-limit", "100ms")
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "marker-42") {
		t.Errorf("--speed 50: %v\n%s", err, out)
	}
	// Enter pauses the playback; nothing more is written until Enter again.
	// The first Enter is waiting in the pipe before the replay starts, so the
	// pause is in place long before the (second-long) cast is through.
	pc := exec.CommandContext(ctx, jitgateBin, "replay", id, "--data-dir", dataDir)
	pr, stdin, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	pc.Stdin = pr
	stderr, _ := pc.StderrPipe()
	var pout syncBuf
	pc.Stdout = &pout
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	var perr strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(perr.String(), "paused") {
		n, err := stderr.Read(buf)
		perr.Write(buf[:n])
		if err != nil {
			t.Fatalf("replay ended before it paused: %v\n%s", err, perr.String())
		}
	}
	held := pout.String()
	time.Sleep(300 * time.Millisecond)
	if pout.String() != held || strings.Contains(held, "logout") {
		t.Errorf("the paused playback kept writing: %q → %q", held, pout.String())
	}
	_, _ = stdin.Write([]byte("\n"))
	stdin.Close()
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if err := pc.Wait(); err != nil || !strings.Contains(pout.String(), "on file") {
		t.Errorf("resumed playback: %v, %q", err, pout.String())
	}
	if _, errOut, code := run("", "replay", id, "--data-dir", dataDir, "--speed", "0"); code != 2 || !strings.Contains(errOut, "--speed") {
		t.Errorf("--speed 0: exit %d, %s", code, errOut)
	}

	// An edited cast is refused by verify and by replay, naming it.
	castPath, _ := filepath.Glob(filepath.Join(dataDir, "recordings", id+".*.cast"))
	b, err := os.ReadFile(castPath[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(castPath[0], []byte(strings.Replace(string(b), "marker-42", "marker-43", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run("", "recording", "verify", id, "--data-dir", dataDir); code != 1 || !strings.Contains(errOut, "do NOT") || !strings.Contains(errOut, filepath.Base(castPath[0])) {
		t.Errorf("verify with an edited cast: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run("", "replay", id, "--data-dir", dataDir, "--no-wait"); code != 1 || strings.Contains(out, "marker-43") || !strings.Contains(errOut, "BROKEN terminal casts") {
		t.Errorf("replay with an edited cast: exit %d\n%s%s", code, out, errOut)
	}
}

// TestReplayFromS3: a recording signed with a KMS key (moto, ECDSA P-256, as
// the AWS runner signs) and stored in S3 with its terminal cast is verified
// and replayed straight from its s3:// location with the SDK's standard
// environment, checked against the KMS key (--kms-key) or its exported PEM;
// a wrong key, a flipped byte in the stored object, and a missing object all
// fail with exit 1.
func TestReplayFromS3(t *testing.T) {
	t.Parallel()
	moto := awstest.Start(t)
	ctx := t.Context()
	cfg := moto.Config()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("evidence")}); err != nil {
		t.Fatal(err)
	}
	kc := kms.NewFromConfig(cfg)
	key, err := kc.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(key.KeyMetadata.Arn)
	signer, err := kmssign.New(ctx, kmssign.Config{Client: kc, KeyID: arn})
	if err != nil {
		t.Fatal(err)
	}

	// The runner's recording: a statement, masked rows and a terminal cast.
	spool := t.TempDir()
	const id = "g_s3replay"
	rec, err := record.Create(ctx, record.Config{Dir: spool, Signer: signer, FlushInterval: -1,
		Header: record.Header{GrantID: id, Identity: "dev|agent", Target: "orders-db", Rule: "agents-read", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	yes, masked := true, "****1111"
	for _, ev := range []record.Event{
		{Type: record.Query, Conn: 1, Statement: "SELECT name, card_number FROM users"},
		{Type: record.Verdict, Conn: 1, Allowed: &yes},
		{Type: record.Rows, Conn: 1, Columns: []string{"name", "card_number"}, Rows: [][]*string{{&masked, &masked}}, RowCount: 1},
	} {
		if err := rec.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w, err := asciicast.Create(filepath.Join(spool, id+".conn2.ch0.cast"), asciicast.Header{Width: 80, Height: 24}, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Output([]byte("$ "))
	_ = w.Input([]byte("uptime\r"))
	at = at.Add(time.Second)
	_ = w.Output([]byte("uptime\r\n up 42 days\r\n$ "))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	uri := "s3://evidence/recordings/" + id + ".jgr"

	dir := t.TempDir()
	pemBytes, err := kmssign.PublicKeyPEM(ctx, kc, arn)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(dir, "runner-key.pem")
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherPath := filepath.Join(dir, "other.pem")
	for p, b := range map[string][]byte{pemPath: pemBytes, otherPath: sign.MarshalPublicKey(otherPriv.Public().(ed25519.PublicKey))} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, string, int) {
		c := exec.CommandContext(ctx, jitgateBin, args...)
		c.Env = append(append(os.Environ(), moto.Env()...), "JITGATE_DATA_DIR="+filepath.Join(dir, "data"))
		var out, errb strings.Builder
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	// The spooled recording goes to S3 the way an operator flushes a spool.
	if out, errOut, code := run("recordings", "flush", "--spool", spool, "--sink", "s3://evidence/recordings"); code != 0 ||
		!strings.Contains(out, "stored "+id+" → "+uri) || !strings.Contains(out, "1 recording(s) stored") {
		t.Fatalf("flush to s3: exit %d\n%s%s", code, out, errOut)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("the spool keeps %d files after the flush", len(left))
	}
	for _, keyArgs := range [][]string{{"--kms-key", arn}, {"--public-key", pemPath}} {
		out, errOut, code := run(append([]string{"recording", "verify", uri}, keyArgs...)...)
		if code != 0 || !strings.Contains(out, uri+": ok, grant "+id) || !strings.Contains(out, "signed by ecdsa-p256:") ||
			!strings.Contains(out, "cast "+id+".conn2.ch0.cast matches its seal") {
			t.Errorf("verify %v: exit %d\n%s%s", keyArgs, code, out, errOut)
		}
	}
	out, errOut, code := run("replay", uri, "--kms-key", arn, "--no-wait")
	if code != 0 || !strings.Contains(out, "SELECT name, card_number FROM users") || !strings.Contains(out, "****1111") ||
		!strings.HasSuffix(out, "$ uptime\r\n up 42 days\r\n$ ") || !strings.Contains(errOut, "verified:") {
		t.Errorf("replay: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}

	// Refusals.
	if out, errOut, code := run("recording", "verify", uri, "--public-key", otherPath); code != 1 || !strings.Contains(errOut, "not the expected") {
		t.Errorf("wrong key: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run("recording", "verify", "s3://evidence/recordings/g_missing.jgr", "--kms-key", arn); code != 1 || !strings.Contains(errOut, "g_missing.jgr") {
		t.Errorf("missing object: exit %d, %s", code, errOut)
	}
	if _, errOut, code := run("recording", "verify", "s3://evidence/../x.jgr", "--kms-key", arn); code == 0 {
		t.Errorf("bad uri accepted: %s", errOut)
	}
	// A sealed cast that is gone fails verify; replay warns and goes on.
	if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("evidence"), Key: aws.String("recordings/" + id + ".conn2.ch0.cast")}); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run("recording", "verify", uri, "--kms-key", arn); code != 1 || !strings.Contains(errOut, "not found next to it") {
		t.Errorf("verify without its cast: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run("replay", uri, "--kms-key", arn, "--no-wait"); code != 0 || !strings.Contains(errOut, "WARNING: terminal cast "+id+".conn2.ch0.cast sealed by the recording but not found") {
		t.Errorf("replay without its cast: exit %d\n%s", code, errOut)
	}
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("evidence"), Key: aws.String("recordings/" + id + ".jgr")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(obj.Body)
	obj.Body.Close()
	b := buf.Bytes()
	b[len(b)-80] ^= 0x01 // inside the final seal
	if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("evidence"), Key: aws.String("recordings/" + id + ".jgr"), Body: bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run("recording", "verify", uri, "--kms-key", arn); code != 1 || !strings.Contains(errOut, "BROKEN at chunk") {
		t.Errorf("flipped byte: exit %d\n%s%s", code, out, errOut)
	}
}

// TestPsqlReplay: a psql session through `jitgate connect` reads masked card
// numbers and emails and tries a DELETE; `jitgate replay` of the stored
// recording verifies, shows the statements, the refusal, and as a table
// every value psql printed, masked as psql saw it, and never a cleartext one.
func TestPsqlReplay(t *testing.T) {
	e := newEnv(t)
	agent := e.token("agent-1", "ai-agents")
	const query = "SELECT name, card_number, email FROM users ORDER BY id"
	out, errOut, code := e.run(agent, "connect", "--target", "orders-db", "--quiet", "--",
		"psql", "-X", "-A", "-t", "-F", "|", "-c", query, "-c", "DELETE FROM users")
	if !strings.Contains(errOut, "blocked") || !strings.Contains(out, "Ada Lovelace|") {
		t.Fatalf("psql: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Split(line, "|"))
	}
	if len(rows) != 3 {
		t.Fatalf("psql printed %d rows, want 3:\n%s", len(rows), out)
	}
	var rec string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && rec == ""; time.Sleep(100 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(e.dataDir, "recordings", "*.jgr")); len(m) == 1 {
			rec = m[0]
		}
	}
	if rec == "" {
		t.Fatal("no recording was stored")
	}
	id := strings.TrimSuffix(filepath.Base(rec), ".jgr")
	replay, errOut, code := e.run(agent, "replay", id, "--data-dir", e.dataDir)
	if code != 0 || !strings.Contains(errOut, "verified:") {
		t.Fatalf("replay: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{query, "DELETE FROM users", "BLOCKED"} {
		if !strings.Contains(replay, want) {
			t.Errorf("the replay lacks %q:\n%s", want, replay)
		}
	}
	// Every value psql printed is in the replay's table, on one line per row.
	lines := strings.Split(replay, "\n")
	for _, row := range rows {
		found := false
		for _, l := range lines {
			all := true
			for _, v := range row {
				all = all && strings.Contains(l, v)
			}
			found = found || all
		}
		if !found {
			t.Errorf("no replay line holds the row psql printed: %q\n%s", row, replay)
		}
	}
	for _, secret := range append(append([]string{}, shopdb.Cards...), shopdb.Emails...) {
		if strings.Contains(replay, secret) || strings.Contains(out, secret) {
			t.Errorf("%q appears in cleartext", secret)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
