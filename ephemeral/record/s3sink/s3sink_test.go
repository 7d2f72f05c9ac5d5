package s3sink_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
	"github.com/jitgate/jitgate/test/awstest"
)

const keyARN = "arn:aws:kms:us-east-1:123456789012:key/0b7c1a52-5a1e-4c8e-9a1d-3f1c2b4d5e6f"

// shared is one moto server for the package's tests; each test uses its own
// bucket or table on it.
var shared *awstest.Server

func TestMain(m *testing.M) {
	srv, err := awstest.StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = srv
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}

var bucketSeq atomic.Int64

type env struct {
	client *s3.Client
	bucket string
	now    time.Time
}

// newEnv creates a bucket with object lock (and so versioning) on its own
// moto server.
func newEnv(t *testing.T, srv *awstest.Server) env {
	t.Helper()
	c := s3.NewFromConfig(shared.Config(), func(o *s3.Options) { o.UsePathStyle = true })
	b := fmt.Sprintf("recordings-%d", bucketSeq.Add(1))
	if _, err := c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(b), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	return env{client: c, bucket: b, now: time.Now().UTC().Truncate(time.Second)}
}

func (e env) sink(t *testing.T, mod ...func(*s3sink.Config)) *s3sink.Sink {
	t.Helper()
	cfg := s3sink.Config{Client: e.client, Bucket: e.bucket, Prefix: "recordings/", KMSKeyID: keyARN,
		PartSize: s3sink.MinPartSize, Now: func() time.Time { return e.now }}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := s3sink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e env) get(t *testing.T, key string) []byte {
	t.Helper()
	out, err := e.client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e env) keys(t *testing.T) []string {
	t.Helper()
	out, err := e.client.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(e.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, v := range out.Versions {
		ks = append(ks, aws.ToString(v.Key))
	}
	return ks
}

func (e env) pendingUploads(t *testing.T) int {
	t.Helper()
	out, err := e.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// content returns n deterministic, incompressible-looking bytes.
func content(n int, seed byte) []byte {
	b := make([]byte, n)
	h := sha256.Sum256([]byte{seed})
	for i := range b {
		if i%32 == 0 && i > 0 {
			h = sha256.Sum256(h[:])
		}
		b[i] = h[i%32]
	}
	return b
}

// TestContract is the recording-sink contract on S3: what goes in comes back
// byte for byte, under the prefix, encrypted with the configured KMS key,
// checksummed, locked, and uploaded in parts above PartSize.
func TestContract(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	sink := e.sink(t)
	ctx := t.Context()
	const part = s3sink.MinPartSize
	tests := []struct {
		name      string
		size      int
		wantParts int
	}{
		{"empty", 0, 0},
		{"small", 1234, 0},
		{"exactly one part", part, 0},
		{"one byte over", part + 1, 2},
		{"two and a half parts", 2*part + part/2, 3},
	}
	for i, tc := range tests {
		body := content(tc.size, byte(i))
		key := fmt.Sprintf("g_contract%d.jsonl", i)
		obj, err := sink.Put(ctx, key, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: Put: %v", tc.name, err)
		}
		sum := sha256.Sum256(body)
		if obj.Key != "recordings/"+key || obj.Size != int64(tc.size) || obj.SHA256 != hex.EncodeToString(sum[:]) || obj.Parts != tc.wantParts {
			t.Errorf("%s: Object %+v; want key recordings/%s, size %d, %d parts", tc.name, obj, key, tc.size, tc.wantParts)
		}
		if obj.VersionID == "" {
			t.Errorf("%s: no version id from a versioned bucket", tc.name)
		}
		if got := e.get(t, obj.Key); !bytes.Equal(got, body) {
			t.Errorf("%s: stored %d bytes differ from the %d sent", tc.name, len(got), len(body))
		}
		head, err := e.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(obj.Key), ChecksumMode: types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		if head.ServerSideEncryption != types.ServerSideEncryptionAwsKms || aws.ToString(head.SSEKMSKeyId) != keyARN {
			t.Errorf("%s: encryption %q key %q; want aws:kms with %s", tc.name, head.ServerSideEncryption, aws.ToString(head.SSEKMSKeyId), keyARN)
		}
		if tc.wantParts == 0 && aws.ToString(head.ChecksumSHA256) != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Errorf("%s: S3 checksum %q is not the content's SHA-256", tc.name, aws.ToString(head.ChecksumSHA256))
		}
		if obj.URI() != "s3://"+e.bucket+"/recordings/"+key || sink.URI(key) != obj.URI() {
			t.Errorf("%s: URI %s / %s", tc.name, obj.URI(), sink.URI(key))
		}
	}
	if n := e.pendingUploads(t); n != 0 {
		t.Errorf("%d multipart uploads left open", n)
	}
}

// TestOverwriteKeepsVersions: storing a key twice keeps both versions in a
// versioned bucket; evidence is never replaced in place.
func TestOverwriteKeepsVersions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	sink := e.sink(t)
	a, err := sink.Put(t.Context(), "g_twice.jsonl", strings.NewReader("first"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sink.Put(t.Context(), "g_twice.jsonl", strings.NewReader("second"))
	if err != nil {
		t.Fatal(err)
	}
	if a.VersionID == b.VersionID {
		t.Errorf("both uploads got version %q", a.VersionID)
	}
	if ks := e.keys(t); len(ks) != 2 {
		t.Errorf("versions %v, want two of recordings/g_twice.jsonl", ks)
	}
}

// TestObjectLock: with a lock mode, every object is retained until now +
// Retention, and a locked version cannot be deleted.
func TestObjectLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	for _, mode := range []s3sink.LockMode{s3sink.Governance, s3sink.Compliance} {
		sink := e.sink(t, func(c *s3sink.Config) { c.LockMode, c.Retention = mode, 30*24*time.Hour })
		for _, size := range []int{10, s3sink.MinPartSize + 1} {
			obj, err := sink.Put(t.Context(), fmt.Sprintf("g_locked-%s-%d.jsonl", mode, size), bytes.NewReader(content(size, 9)))
			if err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			head, err := e.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(obj.Key)})
			if err != nil {
				t.Fatal(err)
			}
			want := e.now.Add(30 * 24 * time.Hour)
			if string(head.ObjectLockMode) != strings.ToUpper(mode.String()) || !aws.ToTime(head.ObjectLockRetainUntilDate).Equal(want) {
				t.Errorf("%s: lock %q until %v; want %s until %v", mode, head.ObjectLockMode, aws.ToTime(head.ObjectLockRetainUntilDate), mode, want)
			}
			_, err = e.client.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(obj.Key), VersionId: aws.String(obj.VersionID)})
			if err == nil {
				t.Errorf("%s: a locked version was deleted", mode)
			}
		}
	}
}

// TestBadKeysAreRefused: keys that could escape the prefix or confuse a
// reader are refused before any request, and nothing is stored.
func TestBadKeysAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	sink := e.sink(t)
	for _, key := range []string{"", "../audit/x", "a/../../b", "/abs", "a//b", "a/", "./a", "a b", "a\x00b", "a\nb", "é", "a?versionId=1", "a%2f", strings.Repeat("k", s3sink.MaxKeyLen)} {
		if err := sink.Store(t.Context(), key, strings.NewReader("x")); err == nil {
			t.Errorf("Store(%q) succeeded", key)
		}
	}
	if ks := e.keys(t); len(ks) != 0 {
		t.Errorf("refused keys left objects %v", ks)
	}
}

type failingReader struct {
	r     io.Reader
	after int
	n     int
}

var errDisk = errors.New("spool file: input/output error")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n >= f.after {
		return 0, errDisk
	}
	if len(p) > f.after-f.n {
		p = p[:f.after-f.n]
	}
	n, err := f.r.Read(p)
	f.n += n
	return n, err
}

// TestFailuresLeaveNothing: a reader that fails half-way through a multipart
// upload, or a cancelled context, returns the cause and leaves neither an
// object nor an open multipart upload (which would cost money and hold a
// partial recording).
func TestFailuresLeaveNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	sink := e.sink(t)
	big := content(3*s3sink.MinPartSize, 3)
	err := sink.Store(t.Context(), "g_torn.jsonl", &failingReader{r: bytes.NewReader(big), after: 2*s3sink.MinPartSize + 100})
	if !errors.Is(err, errDisk) {
		t.Errorf("reader failure: err %v, want the reader's error", err)
	}
	err = sink.Store(t.Context(), "g_torn_small.jsonl", &failingReader{r: bytes.NewReader(big), after: 10})
	if !errors.Is(err, errDisk) {
		t.Errorf("reader failure in the first part: err %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sink.Store(ctx, "g_cancelled.jsonl", bytes.NewReader(big)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v, want context.Canceled", err)
	}
	if ks := e.keys(t); len(ks) != 0 {
		t.Errorf("failed uploads left objects %v", ks)
	}
	if n := e.pendingUploads(t); n != 0 {
		t.Errorf("failed uploads left %d multipart uploads open", n)
	}
}

// tamperingHead reports a different checksum than S3 stored, as a
// corrupting proxy or a bug would.
type tamperingHead struct {
	s3sink.API
	mod func(*s3.HeadObjectOutput)
}

func (t tamperingHead) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := t.API.HeadObject(ctx, in, opts...)
	if err == nil {
		t.mod(out)
	}
	return out, err
}

// TestVerifyFailsClosed: when what S3 reports does not match what was sent,
// Store fails with ErrVerify naming the problem, so the caller keeps its copy.
func TestVerifyFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	tests := []struct {
		name string
		mod  func(*s3.HeadObjectOutput)
		lock bool
		want string
	}{
		{"checksum", func(o *s3.HeadObjectOutput) { o.ChecksumSHA256 = aws.String("AAAA") }, false, "SHA-256 checksum"},
		{"no checksum", func(o *s3.HeadObjectOutput) { o.ChecksumSHA256 = nil }, false, "SHA-256 checksum"},
		{"size", func(o *s3.HeadObjectOutput) { o.ContentLength = aws.Int64(1) }, false, "size 1"},
		{"not kms", func(o *s3.HeadObjectOutput) { o.ServerSideEncryption = types.ServerSideEncryptionAes256 }, false, "want aws:kms"},
		{"other key", func(o *s3.HeadObjectOutput) {
			o.SSEKMSKeyId = aws.String("arn:aws:kms:us-east-1:123456789012:key/other")
		}, false, "KMS key"},
		{"lock dropped", func(o *s3.HeadObjectOutput) { o.ObjectLockMode = ""; o.ObjectLockRetainUntilDate = nil }, true, "object lock mode"},
	}
	for _, tc := range tests {
		sink := e.sink(t, func(c *s3sink.Config) {
			c.Client = tamperingHead{API: e.client, mod: tc.mod}
			if tc.lock {
				c.LockMode, c.Retention = s3sink.Governance, time.Hour
			}
		})
		sizes := []int{100}
		if tc.name == "checksum" || tc.name == "lock dropped" {
			sizes = append(sizes, s3sink.MinPartSize+1)
		}
		for _, size := range sizes {
			err := sink.Store(t.Context(), "g_verify.jsonl", bytes.NewReader(content(size, 1)))
			if !errors.Is(err, s3sink.ErrVerify) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s (%d bytes): err %v, want ErrVerify mentioning %q", tc.name, size, err, tc.want)
			}
		}
	}
}

func TestMissingBucketIsNamed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	sink := e.sink(t, func(c *s3sink.Config) { c.Bucket = "no-such-bucket" })
	err := sink.Store(t.Context(), "g_x.jsonl", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "bucket no-such-bucket does not exist") {
		t.Errorf("Store into a missing bucket: %v", err)
	}
}

func TestConfigRefusals(t *testing.T) {
	t.Parallel()
	c := s3.New(s3.Options{Region: "us-east-1"})
	for _, tc := range []struct {
		cfg  s3sink.Config
		want string
	}{
		{s3sink.Config{Bucket: "b"}, "Client is required"},
		{s3sink.Config{Client: c}, "Bucket is required"},
		{s3sink.Config{Client: c, Bucket: "b", PartSize: 1 << 20}, "below S3's minimum part size"},
		{s3sink.Config{Client: c, Bucket: "b", LockMode: s3sink.Governance}, "needs a positive Retention"},
		{s3sink.Config{Client: c, Bucket: "b", Retention: time.Hour}, "without a LockMode"},
		{s3sink.Config{Client: c, Bucket: "b", LockMode: 7, Retention: time.Hour}, "unknown LockMode"},
		{s3sink.Config{Client: c, Bucket: "b", Prefix: "../"}, "Prefix"},
	} {
		if _, err := s3sink.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for in, want := range map[string]s3sink.LockMode{"": s3sink.NoLock, "none": s3sink.NoLock, "GOVERNANCE": s3sink.Governance, " compliance": s3sink.Compliance} {
		if got, err := s3sink.ParseLockMode(in); err != nil || got != want {
			t.Errorf("ParseLockMode(%q) = %s, %v", in, got, err)
		}
	}
	if _, err := s3sink.ParseLockMode("legal-hold"); err == nil {
		t.Error("ParseLockMode accepted an unknown mode")
	}
}

// TestFind: Find names a stored recording by its s3:// URI under the sink's
// prefix and says "not found" (no error) for a missing key. (S3 answers a
// HEAD in a missing bucket with the same bodiless 404, so that too reads as
// not found; Store names a missing bucket.)
func TestFind(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	sink := e.sink(t)
	if err := sink.Store(t.Context(), "g_found.jgr", strings.NewReader("sealed")); err != nil {
		t.Fatal(err)
	}
	loc, found, err := sink.Find(t.Context(), "g_found.jgr")
	if err != nil || !found || loc != "s3://"+e.bucket+"/recordings/g_found.jgr" {
		t.Fatalf("Find stored: %q %v %v", loc, found, err)
	}
	if loc, found, err := sink.Find(t.Context(), "g_missing.jgr"); err != nil || found || loc != "" {
		t.Fatalf("Find missing: %q %v %v; want not found, no error", loc, found, err)
	}
	if _, found, _ := e.sink(t, func(c *s3sink.Config) { c.Prefix = "other/" }).Find(t.Context(), "g_found.jgr"); found {
		t.Fatal("Find looked outside the sink's prefix")
	}
}
