package s3sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ReadAPI is the part of the S3 client Fetch uses.
type ReadAPI interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// MaxFetchBytes bounds one object Fetch downloads (a recording's size cap is
// far below it).
const MaxFetchBytes = 4 << 30

// ParseURI splits s3://bucket/key. The key must be a valid sink key.
func ParseURI(uri string) (bucket, key string, err error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("s3sink: %q is not an s3://bucket/key URI", uri)
	}
	key = strings.TrimPrefix(u.Path, "/")
	if err := checkKey(key); err != nil {
		return "", "", fmt.Errorf("s3sink: %s: %w", uri, err)
	}
	return u.Host, key, nil
}

// Fetched is a recording Fetch downloaded.
type Fetched struct {
	// Path is the local copy of the recording.
	Path string
	// Companions are the local copies of its companion files (terminal
	// casts, "<grant id>.*.cast" next to it in the bucket).
	Companions []string
}

// Fetch downloads the recording at uri (s3://bucket/key, a "<grant id>.jgr"
// key as the sink stores it) and its companion casts into dir, under their
// base names, for offline verification and replay. Nothing is trusted by
// being fetched: verify the recording, and check the casts against it.
func Fetch(ctx context.Context, client ReadAPI, uri, dir string) (Fetched, error) {
	bucket, key, err := ParseURI(uri)
	if err != nil {
		return Fetched{}, err
	}
	base := path.Base(key)
	id, ok := strings.CutSuffix(base, ".jgr")
	if !ok {
		id, ok = strings.CutSuffix(base, ".jsonl")
	}
	if !ok || id == "" {
		return Fetched{}, fmt.Errorf("s3sink: fetch %s: not a recording key (<grant id>.jgr)", uri)
	}
	var out Fetched
	if out.Path, err = download(ctx, client, bucket, key, dir); err != nil {
		return Fetched{}, err
	}
	prefix := strings.TrimSuffix(key, base) + id + "."
	var token *string
	for {
		page, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix), ContinuationToken: token})
		if err != nil {
			return out, fmt.Errorf("s3sink: list companions of %s: %w", uri, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if !strings.HasSuffix(k, ".cast") || strings.Contains(strings.TrimPrefix(k, prefix), "/") || checkKey(k) != nil {
				continue
			}
			p, err := download(ctx, client, bucket, k, dir)
			if err != nil {
				return out, err
			}
			out.Companions = append(out.Companions, p)
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			return out, nil
		}
		token = page.NextContinuationToken
	}
}

func download(ctx context.Context, client ReadAPI, bucket, key, dir string) (string, error) {
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", fmt.Errorf("s3sink: get s3://%s/%s: %w", bucket, key, err)
	}
	defer obj.Body.Close()
	p := filepath.Join(dir, path.Base(key))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("s3sink: fetch: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(obj.Body, MaxFetchBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > MaxFetchBytes {
		err = errors.New("object larger than MaxFetchBytes")
	}
	if err != nil {
		os.Remove(p)
		return "", fmt.Errorf("s3sink: get s3://%s/%s: %w", bucket, key, err)
	}
	return p, nil
}
