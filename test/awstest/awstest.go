// Package awstest starts a real, throw-away AWS API endpoint for tests: moto's
// server (`moto_server`, the preinstalled Python moto 5.x), on a free loopback
// port, stopped when the test ends. It stands in for DynamoDB, S3, ECS, Lambda
// (control plane only: moto cannot invoke functions without Docker), STS, KMS,
// IAM, EC2 and friends, the same endpoints LocalStack exposes.
//
// Tests use it wherever jitgate talks to AWS: the DynamoDB grant store, the S3
// recording sink, the Lambda and ECS launchers, and the Terraform apply test.
//
//	srv := awstest.Start(t)              // stopped by t.Cleanup
//	ddb := dynamodb.NewFromConfig(srv.Config())
//	s3c := s3.NewFromConfig(srv.Config(), func(o *s3.Options) { o.UsePathStyle = true })
//
// Every server is its own process with its own state, so parallel tests do not
// see each other's resources.
//
// Endpoint is a small proxy in front of moto that corrects the few places
// where moto's answers deviate from the AWS API in ways the Go SDK refuses
// (see compat.go); everything else passes through unchanged.
package awstest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Fixed identity of every moto server.
const (
	Region    = "us-east-1"
	AccountID = "123456789012"
	// AccessKeyID and SecretAccessKey are moto's dummy credentials; they sign
	// requests but moto accepts any.
	AccessKeyID     = "test"
	SecretAccessKey = "test"
)

// Server is a running moto server.
type Server struct {
	// Endpoint is the base URL clients use, e.g. http://127.0.0.1:41234.
	Endpoint string
	// MotoEndpoint is moto itself, without the compatibility proxy.
	MotoEndpoint string
	proxy        *http.Server
	cmd          *exec.Cmd
	log          *lockedBuffer
	done         chan struct{}
	stopOnce     sync.Once
}

// Binary finds moto_server on PATH.
func Binary() (string, error) {
	p, err := exec.LookPath("moto_server")
	if err != nil {
		return "", fmt.Errorf("awstest: moto_server is not on PATH: install it with `pip install 'moto[server]'` (moto 5.x)")
	}
	return p, nil
}

// Start starts a server; it is stopped by tb.Cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := StartServer()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartServer starts a server outside a test. Call Stop.
func StartServer() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{MotoEndpoint: "http://127.0.0.1:" + strconv.Itoa(port), log: &lockedBuffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		// moto must not pick up real credentials or a profile of whoever runs
		// the tests; it needs none.
		s.cmd.Env = scrubbedEnv()
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("awstest: start moto_server: %w", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		if err := s.waitReady(60 * time.Second); err != nil {
			s.Stop()
			lastErr = fmt.Errorf("awstest: moto_server on port %d: %w\n%s", port, err, s.log.String())
			continue
		}
		if err := s.startProxy(); err != nil {
			s.Stop()
			return nil, err
		}
		return s, nil
	}
	return nil, lastErr
}

func scrubbedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("exited before it was ready")
		default:
		}
		resp, err := c.Get(s.MotoEndpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s", limit)
}

// Attach returns a Server for an AWS-compatible endpoint that is already
// running (LocalStack, or moto started by localstack/up.sh). Stop does not
// stop it; SetTransition, Reset and Dump work only if it is moto.
func Attach(endpoint string) *Server {
	done := make(chan struct{})
	close(done)
	s := &Server{Endpoint: strings.TrimRight(endpoint, "/"), MotoEndpoint: strings.TrimRight(endpoint, "/"), log: &lockedBuffer{}, done: done}
	s.stopOnce.Do(func() {})
	return s
}

// Stop kills the server and waits for it to exit. It is safe to call twice.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.proxy != nil {
			_ = s.proxy.Close()
		}
		if s.cmd != nil && s.cmd.Process != nil {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// Log returns what the server printed so far (request lines, tracebacks).
func (s *Server) Log() string { return s.log.String() }

// Config returns an SDK configuration for the server: static dummy
// credentials, Region, and BaseEndpoint set to the server. S3 clients must
// also set UsePathStyle.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		BaseEndpoint: aws.String(s.Endpoint),
		// Retry only briefly: a test should see a broken call, not wait it out.
		RetryMaxAttempts: 3,
	}
}

// Env returns the environment a child process (a function under the Lambda
// emulator, terraform) needs to reach this server with the SDK's standard
// variables.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Progression values of SetTransition.
const (
	// Manual advances a resource's status after it was described Times times.
	Manual = "manual"
	// Immediate moves a resource straight to its final status.
	Immediate = "immediate"
)

// SetTransition changes how moto advances a model's status, e.g.
// ("ecs::task", Manual, 1_000_000) keeps ECS tasks RUNNING until StopTask, as
// Fargate does while the container runs. moto's default moves a task to
// STOPPED after a few DescribeTasks calls.
func (s *Server) SetTransition(ctx context.Context, model, progression string, times int) error {
	tr := map[string]any{"progression": progression}
	if progression == Manual {
		tr["times"] = times
	}
	body, _ := json.Marshal(map[string]any{"model_name": model, "transition": tr})
	return s.post(ctx, "/moto-api/state-manager/set-transition", body)
}

// Reset drops every resource of every service.
func (s *Server) Reset(ctx context.Context) error {
	return s.post(ctx, "/moto-api/reset", nil)
}

// Dump returns moto's whole state as JSON (/moto-api/data.json): every
// resource of every service, including request parameters moto kept (ECS
// RunTask overrides, Lambda environments, S3 object metadata). Tests search it
// for secrets that must never reach a control-plane API.
func (s *Server) Dump(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/moto-api/data.json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("awstest: dump: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("awstest: dump: %d %v", resp.StatusCode, err)
	}
	return b, nil
}

// DefaultSubnets returns the ids of the default VPC's subnets, which moto
// creates in every region (with DNS hostnames on, which moto's ECS RunTask
// needs). It asks EC2's query API directly, so tests need no EC2 SDK client.
func (s *Server) DefaultSubnets(ctx context.Context) ([]string, error) {
	form := url.Values{"Action": {"DescribeSubnets"}, "Version": {"2016-11-15"},
		"Filter.1.Name": {"default-for-az"}, "Filter.1.Value.1": {"true"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// moto routes by the service named in the credential scope; it does not
	// check the signature.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+AccessKeyID+"/20260101/"+Region+"/ec2/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("awstest: describe subnets: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Subnets []string `xml:"subnetSet>item>subnetId"`
	}
	if err := xml.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("awstest: describe subnets: %d %v", resp.StatusCode, err)
	}
	if len(out.Subnets) == 0 {
		return nil, fmt.Errorf("awstest: moto reports no default subnets")
	}
	return out.Subnets, nil
}

func (s *Server) post(ctx context.Context, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("awstest: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("awstest: POST %s: %d %s", path, resp.StatusCode, b)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("awstest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Keep the tail only: a long test makes moto log every request.
	if l.b.Len() > 1<<20 {
		tail := append([]byte(nil), l.b.Bytes()[l.b.Len()-512<<10:]...)
		l.b.Reset()
		l.b.Write(tail)
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
