package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
	"github.com/jitgate/jitgate/ephemeral/record/sign/kmssign"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/functions/internal/deploy"
	"github.com/jitgate/jitgate/test/awstest"
)

// fakeEngine records one statement and its (masked) rows, as the postgres
// engine does, and answers.
type fakeEngine struct{ rec *record.Recorder }

func (e fakeEngine) Serve(context.Context, net.Conn) error { return errors.New("exec only") }
func (e fakeEngine) Exec(_ context.Context, op string) (*spec.Result, error) {
	yes := true
	masked := "****1111"
	for _, ev := range []record.Event{
		{Type: record.Query, Conn: 1, Statement: op},
		{Type: record.Verdict, Conn: 1, Allowed: &yes},
		{Type: record.Rows, Conn: 1, Columns: []string{"card"}, Rows: [][]*string{{&masked}}, RowCount: 1},
		{Type: record.Result, Conn: 1, Tag: "SELECT 1"},
	} {
		if err := e.rec.Write(ev); err != nil {
			return nil, err
		}
	}
	return &spec.Result{}, nil
}

// TestRunnerRecordingSigned: with JITGATE_RECORDING_SIGNING_KEY naming a KMS
// key (moto: ECC_NIST_P256), the runner's proxy configuration seals the
// recording with it; the recording verifies under the key's public half as
// KMS hands it out (PEM, for `jitgate recording verify --public-key`), and a
// flipped byte fails naming its chunk. A key the runner cannot use stops it.
func TestRunnerRecordingSigned(t *testing.T) {
	t.Parallel()
	srv := awstest.Start(t)
	c := kms.NewFromConfig(srv.Config())
	key, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	env, err := deploy.FromEnv(func(k string) string {
		return map[string]string{"JITGATE_RECORDING_SIGNING_KEY": aws.ToString(key.KeyMetadata.Arn)}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	signer, err := recordingSigner(t.Context(), env, c, log)
	if err != nil || signer == nil {
		t.Fatalf("signer: %v", err)
	}
	r := &runner{signer: signer, log: log, now: time.Now, engines: map[spec.Protocol]session.Factory{
		spec.Postgres: func(_ *spec.Grant, rec *record.Recorder, _ *slog.Logger) (session.Engine, error) {
			return fakeEngine{rec}, nil
		},
	}}
	spool := t.TempDir()
	g := specFor(storedGrant())
	g.Deadline, g.Record.Dir = time.Now().Add(time.Minute), spool
	var out bytes.Buffer
	if err := session.Run(t.Context(), r.sessionConfig(g, &out, log)); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	path := filepath.Join(spool, g.ID+record.Ext)

	pemBytes, err := kmssign.PublicKeyPEM(t.Context(), c, aws.ToString(key.KeyMetadata.KeyId))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.ParseVerifyKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := record.VerifyFile(path, record.VerifyOptions{PublicKey: pub})
	if err != nil || !rep.Signed || !rep.Complete || !strings.HasPrefix(rep.KeyID, "ecdsa-p256:") || rep.Header.GrantID != g.ID {
		t.Fatalf("runner recording: %+v %v", rep, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{len(b) / 2, len(b) - 20} {
		flipped := append([]byte(nil), b...)
		flipped[at] ^= 0x20
		_, err := record.Verify(bytes.NewReader(flipped), record.VerifyOptions{PublicKey: pub})
		var ve *record.VerifyError
		if !errors.As(err, &ve) {
			t.Errorf("byte %d flipped: %v, want a VerifyError", at, err)
		}
	}
	if _, err := record.Verify(io.MultiReader(bytes.NewReader(b[:len(b)-1])), record.VerifyOptions{PublicKey: pub}); err == nil {
		t.Error("a cut recording verified")
	}

	// A configured key the runner cannot use is an error, not an unsigned run.
	bad := env
	bad.RecordingSigningKey = "alias/does-not-exist"
	if s, err := recordingSigner(t.Context(), bad, c, log); err == nil || s != nil {
		t.Fatalf("unusable key: %v, %v", s, err)
	}
	none := env
	none.RecordingSigningKey = ""
	if s, err := recordingSigner(t.Context(), none, c, log); err != nil || s != nil {
		t.Fatalf("no key configured: %v, %v", s, err)
	}
}
