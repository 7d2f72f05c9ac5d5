// Package awsfixture sets up, on a moto server, the AWS resources the
// functions' tests run against — what terraform/modules/jitgate creates in a
// real account: the grants table, the recordings bucket (versioned, object
// lock), an ECS cluster with the proxy's Fargate task definition, and a
// subnet and security group for session tasks — and the environment a
// function gets from Terraform. TEST ONLY.
//
//	moto := awstest.Start(t)
//	st := awsfixture.New(t, moto)
//	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Env: st.Env(map[string]string{...})})
package awsfixture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jitgate/jitgate/broker/store/dynamo"
	"github.com/jitgate/jitgate/test/awstest"
	"github.com/jitgate/jitgate/test/lambdatest"
)

// Stack is one deployment's resources on moto.
type Stack struct {
	Moto           *awstest.Server
	Table          string
	Bucket         string
	Cluster        string
	TaskDefinition string
	Container      string
	Subnets        []string
	SecurityGroup  string
	DynamoDB       *dynamodb.Client
	S3             *s3.Client
	ECS            *awsecs.Client
}

var seq atomic.Int64

// New creates a fresh set of resources (names unique on moto) and keeps ECS
// tasks RUNNING until stopped, as Fargate does.
func New(t testing.TB, moto *awstest.Server) *Stack {
	t.Helper()
	ctx := context.Background()
	n := seq.Add(1)
	s := &Stack{
		Moto: moto, Table: fmt.Sprintf("jitgate-grants-%d", n), Bucket: fmt.Sprintf("jitgate-recordings-%d", n),
		Cluster: fmt.Sprintf("jitgate-%d", n), TaskDefinition: fmt.Sprintf("jitgate-proxy-%d", n), Container: "proxy",
		SecurityGroup: "sg-0f1e2d3c4b5a69788",
		DynamoDB:      dynamodb.NewFromConfig(moto.Config()),
		S3:            s3.NewFromConfig(moto.Config(), func(o *s3.Options) { o.UsePathStyle = true }),
		ECS:           awsecs.NewFromConfig(moto.Config()),
	}
	if err := dynamo.CreateTable(ctx, s.DynamoDB, s.Table); err != nil {
		t.Fatal(err)
	}
	if _, err := s.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ECS.CreateCluster(ctx, &awsecs.CreateClusterInput{ClusterName: aws.String(s.Cluster)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.ECS.RegisterTaskDefinition(ctx, &awsecs.RegisterTaskDefinitionInput{
		Family: aws.String(s.TaskDefinition), NetworkMode: ecstypes.NetworkModeAwsvpc,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate}, Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String(s.Container), Image: aws.String("jitgate-runner:test"),
			Cpu: 256, Memory: aws.Int32(512), Essential: aws.Bool(true),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: aws.Int32(5432), Protocol: ecstypes.TransportProtocolTcp}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Subnets, err = moto.DefaultSubnets(ctx); err != nil {
		t.Fatal(err)
	}
	s.Subnets = s.Subnets[:1]
	if err := moto.SetTransition(ctx, "ecs::task", awstest.Manual, 1_000_000); err != nil {
		t.Logf("awsfixture: not moto (or an old moto), ECS tasks follow the endpoint's own lifecycle: %v", err)
	}
	return s
}

// PutObject stores body at key in the bucket and returns its s3:// URI.
func (s *Stack) PutObject(t testing.TB, key string, body []byte) string {
	t.Helper()
	if _, err := s.S3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	return "s3://" + s.Bucket + "/" + key
}

// GetObject reads key from the bucket.
func (s *Stack) GetObject(t testing.TB, key string) ([]byte, *s3.GetObjectOutput) {
	t.Helper()
	out, err := s.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", s.Bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, out
}

// Keys lists the bucket's keys under prefix.
func (s *Stack) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	out, err := s.S3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// Env is a function's environment as Terraform sets it, pointed at moto,
// plus extra (which wins).
func (s *Stack) Env(extra map[string]string) []string {
	kv := map[string]string{
		"JITGATE_TABLE":               s.Table,
		"JITGATE_BUCKET":              s.Bucket,
		"JITGATE_S3_PATH_STYLE":       "true",
		"JITGATE_OBJECT_LOCK_MODE":    "governance",
		"JITGATE_OBJECT_LOCK_DAYS":    "1",
		"JITGATE_ECS_CLUSTER":         s.Cluster,
		"JITGATE_ECS_TASK_DEFINITION": s.TaskDefinition,
		"JITGATE_ECS_CONTAINER":       s.Container,
		"JITGATE_ECS_SUBNETS":         s.Subnets[0],
		"JITGATE_ECS_SECURITY_GROUPS": s.SecurityGroup,
	}
	for _, e := range s.Moto.Env() {
		k, v, _ := strings.Cut(e, "=")
		kv[k] = v
	}
	for k, v := range extra {
		if v == "" {
			delete(kv, k)
			continue
		}
		kv[k] = v
	}
	return lambdatest.Env(kv)
}
