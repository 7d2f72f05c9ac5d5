// Package s3sink stores finished recordings in S3: the upload step at the end
// of a proxy's life (engine → guard → mask → record → upload), used by the
// Lambda exec runner and the ECS session task, and by the functions for the
// broker's audit log segments.
//
// Every object is written with SSE-KMS, a SHA-256 checksum that S3 verifies
// on arrival, and, when configured, an object-lock retention so nobody (not
// even jitgate) can delete or overwrite the evidence before it expires.
// Objects up to PartSize go up in one PutObject; larger ones as a multipart
// upload whose parts carry their own SHA-256 (an upload that fails half-way is
// aborted, never left behind). After every upload the sink reads the object's
// head back and checks size, checksum, encryption and retention: an upload S3
// did not store as asked is an error, so the caller keeps its spooled copy.
//
// For LocalStack or moto, set BaseEndpoint on the aws.Config and UsePathStyle
// on the S3 client.
//
//	sink, err := s3sink.New(s3sink.Config{Client: s3.NewFromConfig(cfg), Bucket: "acme-jitgate-recordings",
//		Prefix: "recordings/", KMSKeyID: keyARN, LockMode: s3sink.Governance, Retention: 365 * 24 * time.Hour})
//	err = sink.Store(ctx, grantID+".jsonl", f)
package s3sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// API is the part of the S3 client the sink uses.
type API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	PutObjectRetention(ctx context.Context, in *s3.PutObjectRetentionInput, opts ...func(*s3.Options)) (*s3.PutObjectRetentionOutput, error)
}

// LockMode is the object-lock retention mode of stored objects.
type LockMode int

const (
	// NoLock writes no retention (the bucket's default retention, if any, applies).
	NoLock LockMode = iota
	// Governance: users with s3:BypassGovernanceRetention may still delete.
	Governance
	// Compliance: nobody, root included, can delete before the date.
	Compliance
)

func (m LockMode) String() string {
	switch m {
	case NoLock:
		return "none"
	case Governance:
		return "governance"
	case Compliance:
		return "compliance"
	}
	return fmt.Sprintf("lockmode(%d)", int(m))
}

// ParseLockMode parses "", "none", "governance" or "compliance".
func ParseLockMode(s string) (LockMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return NoLock, nil
	case "governance":
		return Governance, nil
	case "compliance":
		return Compliance, nil
	}
	return NoLock, fmt.Errorf("s3sink: unknown object lock mode %q (want none, governance or compliance)", s)
}

func (m LockMode) s3() types.ObjectLockMode {
	switch m {
	case Governance:
		return types.ObjectLockModeGovernance
	case Compliance:
		return types.ObjectLockModeCompliance
	}
	return ""
}

// Limits and defaults.
const (
	// MinPartSize is S3's minimum size of every part but the last.
	MinPartSize = 5 << 20
	// DefaultPartSize is the part size, and the size above which an object is
	// uploaded in parts.
	DefaultPartSize = 8 << 20
	// MaxParts is S3's limit on parts per upload.
	MaxParts = 10000
	// MaxKeyLen bounds a key (prefix included); S3 allows 1024 bytes.
	MaxKeyLen = 1024
)

// Config configures a Sink.
type Config struct {
	// Client is an S3 client (s3.NewFromConfig; UsePathStyle for moto and
	// LocalStack). Required.
	Client API
	// Bucket is the recordings bucket. Required. It should have versioning and
	// object lock enabled and public access blocked (terraform/modules/jitgate).
	Bucket string
	// Prefix is prepended to every key, e.g. "recordings/". It must itself be
	// a valid key prefix (see Store).
	Prefix string
	// KMSKeyID is the KMS key (id, ARN or alias ARN) objects are encrypted
	// with. Empty uses the account's AWS-managed aws/s3 key; objects are
	// SSE-KMS encrypted either way.
	KMSKeyID string
	// PartSize is the size of each part of a multipart upload, and the size
	// above which an object is uploaded in parts. Default DefaultPartSize;
	// at least MinPartSize. Up to one part is held in memory.
	PartSize int64
	// LockMode and Retention set object-lock retention on every object:
	// retained until now + Retention. Both or neither. Locking needs a
	// bucket created with object lock enabled.
	LockMode  LockMode
	Retention time.Duration
	// ContentType of stored objects; default application/octet-stream.
	ContentType string
	// Now is the clock for retention dates; default time.Now.
	Now func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("s3sink: Client is required")
	case c.Bucket == "":
		return errors.New("s3sink: Bucket is required")
	case c.PartSize != 0 && c.PartSize < MinPartSize:
		return fmt.Errorf("s3sink: PartSize %d is below S3's minimum part size %d", c.PartSize, MinPartSize)
	case c.LockMode != NoLock && c.LockMode != Governance && c.LockMode != Compliance:
		return fmt.Errorf("s3sink: unknown LockMode %s", c.LockMode)
	case c.LockMode != NoLock && c.Retention <= 0:
		return fmt.Errorf("s3sink: LockMode %s needs a positive Retention", c.LockMode)
	case c.LockMode == NoLock && c.Retention != 0:
		return fmt.Errorf("s3sink: Retention %s without a LockMode", c.Retention)
	}
	if c.Prefix != "" {
		if err := checkKey(strings.TrimSuffix(c.Prefix, "/")); err != nil {
			return fmt.Errorf("s3sink: Prefix: %w", err)
		}
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.ContentType == "" {
		c.ContentType = "application/octet-stream"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Sink stores objects in one bucket. It is safe for concurrent use.
type Sink struct{ cfg Config }

// New checks cfg. It does not contact S3.
func New(cfg Config) (*Sink, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg}, nil
}

// Object describes a stored object.
type Object struct {
	Bucket    string
	Key       string // prefix included
	VersionID string
	Size      int64
	// SHA256 is the lowercase hex SHA-256 of the whole content.
	SHA256 string
	// Checksum is S3's ChecksumSHA256 as verified: the base64 SHA-256 of the
	// content (one part), or of the concatenated part digests (multipart).
	Checksum string
	// Parts is 0 for a single PutObject, else the number of parts.
	Parts int
}

// URI is s3://bucket/key.
func (o Object) URI() string { return "s3://" + o.Bucket + "/" + o.Key }

// URI returns where key is (or would be) stored.
func (s *Sink) URI(key string) string { return "s3://" + s.cfg.Bucket + "/" + s.cfg.Prefix + key }

// Store uploads everything r yields to Prefix+key. It is the recording sink's
// contract; Put returns the details.
func (s *Sink) Store(ctx context.Context, key string, r io.Reader) error {
	_, err := s.Put(ctx, key, r)
	return err
}

// Put uploads r to Prefix+key and verifies what S3 stored. Keys are 1 to
// MaxKeyLen bytes of [A-Za-z0-9._-] segments separated by single "/", without
// "." or ".." segments. On error nothing usable was stored (a half-done
// multipart upload is aborted), except for a verification failure, which
// names the version S3 holds.
func (s *Sink) Put(ctx context.Context, key string, r io.Reader) (Object, error) {
	full := s.cfg.Prefix + key
	if err := checkKey(full); err != nil {
		return Object{}, fmt.Errorf("s3sink: store: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("s3sink: store %s: %w", full, err)
	}
	first := make([]byte, s.cfg.PartSize+1)
	n, err := io.ReadFull(r, first)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return s.putSingle(ctx, full, first[:n])
	case err != nil:
		return Object{}, fmt.Errorf("s3sink: store %s: read: %w", full, err)
	}
	return s.putMultipart(ctx, full, first, r)
}

func (s *Sink) retention() (types.ObjectLockMode, *time.Time) {
	if s.cfg.LockMode == NoLock {
		return "", nil
	}
	until := s.cfg.Now().Add(s.cfg.Retention).UTC().Truncate(time.Second)
	return s.cfg.LockMode.s3(), &until
}

func (s *Sink) kmsKey() *string {
	if s.cfg.KMSKeyID == "" {
		return nil
	}
	return aws.String(s.cfg.KMSKeyID)
}

func (s *Sink) putSingle(ctx context.Context, key string, body []byte) (Object, error) {
	sum := sha256.Sum256(body)
	checksum := base64.StdEncoding.EncodeToString(sum[:])
	mode, until := s.retention()
	out, err := s.cfg.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:                    aws.String(s.cfg.Bucket),
		Key:                       aws.String(key),
		Body:                      bytes.NewReader(body),
		ContentLength:             aws.Int64(int64(len(body))),
		ContentType:               aws.String(s.cfg.ContentType),
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
		ChecksumSHA256:            aws.String(checksum),
		ServerSideEncryption:      types.ServerSideEncryptionAwsKms,
		SSEKMSKeyId:               s.kmsKey(),
		BucketKeyEnabled:          aws.Bool(true),
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
	})
	if err != nil {
		return Object{}, s.mapErr("store "+key, err)
	}
	obj := Object{Bucket: s.cfg.Bucket, Key: key, VersionID: aws.ToString(out.VersionId), Size: int64(len(body)),
		SHA256: hex.EncodeToString(sum[:]), Checksum: checksum}
	return obj, s.verify(ctx, obj, until)
}

func (s *Sink) putMultipart(ctx context.Context, key string, first []byte, rest io.Reader) (obj Object, err error) {
	mode, until := s.retention()
	created, err := s.cfg.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:                    aws.String(s.cfg.Bucket),
		Key:                       aws.String(key),
		ContentType:               aws.String(s.cfg.ContentType),
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
		ServerSideEncryption:      types.ServerSideEncryptionAwsKms,
		SSEKMSKeyId:               s.kmsKey(),
		BucketKeyEnabled:          aws.Bool(true),
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
	})
	if err != nil {
		return Object{}, s.mapErr("store "+key+": start multipart upload", err)
	}
	uploadID := created.UploadId
	completed := false
	defer func() {
		if completed {
			return
		}
		_, aerr := s.cfg.Client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key), UploadId: uploadID,
		})
		if aerr != nil {
			err = errors.Join(err, s.mapErr("abort multipart upload of "+key, aerr))
		}
	}()

	whole := sha256.New()
	var partSums []byte
	var parts []types.CompletedPart
	var size int64
	upload := func(body []byte) error {
		if len(parts) >= MaxParts {
			return fmt.Errorf("s3sink: store %s: more than %d parts of %d bytes", key, MaxParts, s.cfg.PartSize)
		}
		sum := sha256.Sum256(body)
		whole.Write(body)
		partSums = append(partSums, sum[:]...)
		checksum := base64.StdEncoding.EncodeToString(sum[:])
		num := int32(len(parts) + 1)
		out, err := s.cfg.Client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key), UploadId: uploadID, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
			ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ChecksumSHA256: aws.String(checksum),
		})
		if err != nil {
			return s.mapErr(fmt.Sprintf("store %s: part %d", key, num), err)
		}
		if got := aws.ToString(out.ChecksumSHA256); got != "" && got != checksum {
			return fmt.Errorf("s3sink: store %s: part %d: S3 computed checksum %s, sent %s", key, num, got, checksum)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num), ChecksumSHA256: aws.String(checksum)})
		size += int64(len(body))
		return nil
	}
	// buf holds PartSize+1 bytes: upload PartSize, carry the last byte over
	// (so the final part is never empty), refill, repeat.
	buf := first
	for {
		if err := upload(buf[:s.cfg.PartSize]); err != nil {
			return Object{}, err
		}
		buf[0] = buf[s.cfg.PartSize]
		n, rerr := io.ReadFull(rest, buf[1:])
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			if err := upload(buf[:1+n]); err != nil {
				return Object{}, err
			}
			break
		}
		if rerr != nil {
			return Object{}, fmt.Errorf("s3sink: store %s: read: %w", key, rerr)
		}
		if err := ctx.Err(); err != nil {
			return Object{}, fmt.Errorf("s3sink: store %s: %w", key, err)
		}
	}
	composite := sha256.Sum256(partSums)
	checksum := base64.StdEncoding.EncodeToString(composite[:])
	out, err := s.cfg.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key), UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return Object{}, s.mapErr("store "+key+": complete multipart upload", err)
	}
	completed = true
	obj = Object{Bucket: s.cfg.Bucket, Key: key, VersionID: aws.ToString(out.VersionId), Size: size,
		SHA256: hex.EncodeToString(whole.Sum(nil)), Checksum: checksum, Parts: len(parts)}
	if until != nil {
		if err := s.ensureRetention(ctx, obj, mode, *until); err != nil {
			return obj, err
		}
	}
	return obj, s.verify(ctx, obj, until)
}

// Find reports whether a recording is stored under key, and its s3:// URI:
// the sweeper links recordings whose proxy outlived its broker. S3 answers a
// HEAD in a missing bucket with the same bodiless 404, so that reads as not
// found too (Store names a missing bucket).
func (s *Sink) Find(ctx context.Context, key string) (string, bool, error) {
	_, err := s.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.cfg.Prefix + key)})
	if err == nil {
		return s.URI(key), true, nil
	}
	var nf *types.NotFound
	var ae smithy.APIError
	if errors.As(err, &nf) || (errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")) {
		return "", false, nil
	}
	return "", false, s.mapErr("find "+s.URI(key), err)
}

// ensureRetention sets the retention of a multipart object when S3 did not
// take it from CreateMultipartUpload (AWS does; moto and some emulators do
// not). Setting a retention on a version that has none, or extending one, is
// always allowed; verify then checks the result either way.
func (s *Sink) ensureRetention(ctx context.Context, obj Object, mode types.ObjectLockMode, until time.Time) error {
	in := &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	head, err := s.cfg.Client.HeadObject(ctx, in)
	if err != nil {
		return s.mapErr("verify "+obj.URI(), err)
	}
	if head.ObjectLockMode == mode && head.ObjectLockRetainUntilDate != nil && !head.ObjectLockRetainUntilDate.Before(until) {
		return nil
	}
	put := &s3.PutObjectRetentionInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(mode), RetainUntilDate: aws.Time(until)}}
	if obj.VersionID != "" {
		put.VersionId = aws.String(obj.VersionID)
	}
	if _, err := s.cfg.Client.PutObjectRetention(ctx, put); err != nil {
		return s.mapErr("set retention of "+obj.URI(), err)
	}
	return nil
}

// verify reads the stored object's head and checks it is what was sent.
func (s *Sink) verify(ctx context.Context, obj Object, until *time.Time) error {
	in := &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), ChecksumMode: types.ChecksumModeEnabled}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	head, err := s.cfg.Client.HeadObject(ctx, in)
	if err != nil {
		return s.mapErr("verify "+obj.URI(), err)
	}
	var problems []string
	if got := aws.ToInt64(head.ContentLength); got != obj.Size {
		problems = append(problems, fmt.Sprintf("size %d, sent %d", got, obj.Size))
	}
	got := aws.ToString(head.ChecksumSHA256)
	if obj.Parts > 0 {
		// S3 writes a composite checksum as "<base64>-<parts>".
		if b, n, ok := strings.Cut(got, "-"); ok {
			if n != fmt.Sprint(obj.Parts) {
				problems = append(problems, fmt.Sprintf("checksum covers %s parts, sent %d", n, obj.Parts))
			}
			got = b
		}
	}
	if got != obj.Checksum {
		problems = append(problems, fmt.Sprintf("SHA-256 checksum %q, sent %q", got, obj.Checksum))
	}
	if head.ServerSideEncryption != types.ServerSideEncryptionAwsKms {
		problems = append(problems, fmt.Sprintf("encryption %q, want aws:kms", head.ServerSideEncryption))
	} else if k := s.cfg.KMSKeyID; k != "" && !sameKey(aws.ToString(head.SSEKMSKeyId), k) {
		problems = append(problems, fmt.Sprintf("KMS key %q, want %q", aws.ToString(head.SSEKMSKeyId), k))
	}
	if until != nil {
		if head.ObjectLockMode != s.cfg.LockMode.s3() {
			problems = append(problems, fmt.Sprintf("object lock mode %q, want %q", head.ObjectLockMode, s.cfg.LockMode.s3()))
		}
		if head.ObjectLockRetainUntilDate == nil || head.ObjectLockRetainUntilDate.Before(*until) {
			problems = append(problems, fmt.Sprintf("retained until %v, want %v", aws.ToTime(head.ObjectLockRetainUntilDate), *until))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("s3sink: verify %s (version %q): %w: %s", obj.URI(), obj.VersionID, ErrVerify, strings.Join(problems, "; "))
	}
	return nil
}

// ErrVerify is wrapped when S3 did not store an object as it was sent.
var ErrVerify = errors.New("stored object does not match the upload")

// sameKey compares a KMS key as S3 reports it (an ARN) with the configured
// id, ARN or alias.
func sameKey(reported, configured string) bool {
	if reported == configured {
		return true
	}
	if strings.HasPrefix(configured, "alias/") || strings.Contains(configured, ":alias/") {
		return true // S3 reports the key an alias points to; it cannot be compared here
	}
	return strings.HasSuffix(reported, "/"+configured)
}

// checkKey enforces the key grammar documented on Put.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("key must be 1 to %d bytes, got %d", MaxKeyLen, len(key))
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("key %q has an empty, \".\" or \"..\" segment", key)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("key %q has a character outside [A-Za-z0-9._-/]", key)
			}
		}
	}
	return nil
}

// mapErr is the one place S3 errors become sink errors.
func (s *Sink) mapErr(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3sink: %s: %w", op, err)
	}
	var nsb *types.NoSuchBucket
	if errors.As(err, &nsb) {
		return fmt.Errorf("s3sink: %s: bucket %s does not exist: %w", op, s.cfg.Bucket, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchBucket":
			return fmt.Errorf("s3sink: %s: bucket %s does not exist: %w", op, s.cfg.Bucket, err)
		case "AccessDenied", "KMS.AccessDeniedException", "KMS.DisabledException", "KMS.NotFoundException":
			return fmt.Errorf("s3sink: %s: access denied (bucket policy, IAM role or KMS key %q): %w", op, s.cfg.KMSKeyID, err)
		case "InvalidRequest":
			if s.cfg.LockMode != NoLock {
				return fmt.Errorf("s3sink: %s: S3 refused the request; is object lock enabled on bucket %s? %w", op, s.cfg.Bucket, err)
			}
		}
	}
	return fmt.Errorf("s3sink: %s: %w", op, err)
}
