package awstest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jitgate/jitgate/test/awstest"
)

func TestServerServesS3AndStops(t *testing.T) {
	t.Parallel()
	srv := awstest.Start(t)
	ctx := t.Context()
	c := s3.NewFromConfig(srv.Config(), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("probe-bucket")}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("probe-bucket"), Key: aws.String("k"), Body: bytes.NewReader([]byte("planted-value"))}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	dump, err := srv.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dump, []byte("probe-bucket")) {
		t.Errorf("Dump does not mention the bucket: %.300s", dump)
	}
	subnets, err := srv.DefaultSubnets(ctx)
	if err != nil || len(subnets) == 0 || subnets[0][:7] != "subnet-" {
		t.Errorf("DefaultSubnets: %v, %v", subnets, err)
	}
	if err := srv.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil || len(out.Buckets) != 0 {
		t.Errorf("after Reset: %d buckets, %v", len(out.Buckets), err)
	}
	srv.Stop()
	srv.Stop() // twice is fine
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = c.ListBuckets(cctx, &s3.ListBucketsInput{})
	if err == nil {
		t.Fatal("the server still answers after Stop")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("a stopped server should refuse connections, not hang")
	}
}

func TestServersAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := awstest.Start(t), awstest.Start(t)
	if a.Endpoint == b.Endpoint {
		t.Fatalf("two servers share %s", a.Endpoint)
	}
	ctx := t.Context()
	ca := s3.NewFromConfig(a.Config(), func(o *s3.Options) { o.UsePathStyle = true })
	cb := s3.NewFromConfig(b.Config(), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := ca.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("only-in-a")}); err != nil {
		t.Fatal(err)
	}
	out, err := cb.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(out.Buckets) != 0 {
		t.Errorf("server b sees %d buckets (%v); want none", len(out.Buckets), err)
	}
}

func TestFixECS(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`{"tasks":[{"containers":[{"cpu":256,"memory":512,"name":"p"}]}]}`, `{"tasks":[{"containers":[{"cpu":"256","memory":"512","name":"p"}]}]}`},
		{`{"task":{"containers":[{"cpu":0}]}}`, `{"task":{"containers":[{"cpu":"0"}]}}`},
		{`{"tasks":[{"containers":[{"cpu":"256"}]}]}`, `{"tasks":[{"containers":[{"cpu":"256"}]}]}`},
		{`{"taskDefinition":{"containerDefinitions":[{"cpu":256}]}}`, `{"taskDefinition":{"containerDefinitions":[{"cpu":256}]}}`},
		{`not json`, `not json`},
	}
	for _, tc := range tests {
		if got := string(awstest.FixECS([]byte(tc.in))); got != tc.want {
			t.Errorf("FixECS(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
