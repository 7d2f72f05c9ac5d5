// Package lambdatest runs a Lambda function binary for tests under the AWS
// Lambda Runtime Interface Emulator (aws-lambda-rie), which implements the
// Runtime API the function talks to exactly as the provided.al2023 runtime
// does. The function is the real `bootstrap` binary that goes into the zip;
// the test sends it real event payloads (API Gateway v2, Function URL,
// EventBridge schedule, the runner's invocation) and reads its responses.
//
// The emulator is installed by scripts/ensure-deps.sh (go install
// github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie).
// Never run `aws-lambda-rie --help`: it hangs.
//
//	bin := lambdatest.Build(t, "./functions/sweeper")
//	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Env: []string{"JITGATE_TABLE=grants"}})
//	out, err := fn.Invoke(ctx, []byte(`{"source":"aws.events"}`))
//
// Each Function is its own emulator process on two free loopback ports, so
// tests may run in parallel. The emulator serves one invocation at a time, as
// one Lambda execution environment does.
package lambdatest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// InvokePath is the emulator's invocation endpoint. It is also the path of
// Lambda's Invoke API for a function named "function", so an SDK Lambda
// client whose BaseEndpoint is Function.URL can invoke it by that name.
const InvokePath = "/2015-03-31/functions/function/invocations"

// FunctionName is the name to invoke through an SDK client.
const FunctionName = "function"

// RIE finds aws-lambda-rie on PATH or in Go's install directory.
func RIE() (string, error) {
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		for _, p := range filepath.SplitList(gopath) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "aws-lambda-rie")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("lambdatest: aws-lambda-rie not found on PATH or in $GOPATH/bin: run scripts/ensure-deps.sh (it installs github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie)")
}

// Build compiles the function package pkg (e.g. "./functions/api", relative
// to the module root) into a bootstrap binary for this machine, as `make
// functions` does for the zip (cgo on, the lambda.norpc tag), and returns its
// path. The result is cached by the go build cache.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "lambda.norpc", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("lambdatest: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// ModuleRoot finds the directory holding go.mod, from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("lambdatest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Config describes one function.
type Config struct {
	// Binary is the function's bootstrap executable. Required.
	Binary string
	// Env is the function's configuration (NAME=value), as Terraform would
	// set it. Only PATH, HOME and TMPDIR of the test's own environment are
	// passed on besides; no AWS credentials leak in by accident.
	Env []string
	// Timeout is the function timeout (AWS_LAMBDA_FUNCTION_TIMEOUT); default 60s.
	Timeout time.Duration
	// Name is AWS_LAMBDA_FUNCTION_NAME; default "function".
	Name string
}

// Function is a function running under the emulator.
type Function struct {
	// URL is the emulator's base URL, e.g. http://127.0.0.1:41234; use it as
	// an SDK Lambda client's BaseEndpoint with FunctionName.
	URL  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	once sync.Once
}

// Start runs cfg.Binary under the emulator; it is stopped by tb.Cleanup, and
// the emulator's output (the function's logs) is printed if the test failed.
func Start(tb testing.TB, cfg Config) *Function {
	tb.Helper()
	f, err := StartFunction(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		f.Stop()
		if tb.Failed() {
			tb.Logf("lambdatest: output of %s:\n%s", cfg.Binary, f.Output())
		}
	})
	return f
}

// StartFunction starts a function outside a test. Call Stop.
func StartFunction(cfg Config) (*Function, error) {
	rie, err := RIE()
	if err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		return nil, fmt.Errorf("lambdatest: no Binary")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Name == "" {
		cfg.Name = FunctionName
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		apiPort, err1 := freePort()
		riePort, err2 := freePort()
		if err1 != nil || err2 != nil || apiPort == riePort {
			lastErr = fmt.Errorf("lambdatest: free ports: %v %v", err1, err2)
			continue
		}
		f := &Function{URL: "http://127.0.0.1:" + strconv.Itoa(riePort), out: &lockedBuffer{}, done: make(chan struct{})}
		f.cmd = exec.Command(rie,
			"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(apiPort),
			"--runtime-interface-emulator-address", "127.0.0.1:"+strconv.Itoa(riePort),
			"--log-level", "error",
			cfg.Binary)
		f.cmd.Dir = filepath.Dir(cfg.Binary)
		env := []string{
			"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(int(cfg.Timeout/time.Second)),
			"AWS_LAMBDA_FUNCTION_NAME=" + cfg.Name,
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512",
		}
		for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		f.cmd.Env = append(env, cfg.Env...)
		f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
		f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := f.cmd.Start(); err != nil {
			return nil, fmt.Errorf("lambdatest: start %s: %w", rie, err)
		}
		go func() { _ = f.cmd.Wait(); close(f.done) }()
		if err := f.waitListening(riePort, 15*time.Second); err != nil {
			f.Stop()
			lastErr = fmt.Errorf("lambdatest: emulator on port %d: %w\n%s", riePort, err, f.out.String())
			continue
		}
		return f, nil
	}
	return nil, lastErr
}

func (f *Function) waitListening(port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-f.done:
			return fmt.Errorf("exited before listening")
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not listening after %s", limit)
}

// InvokeError is a non-200 answer of the emulator.
type InvokeError struct {
	Status int
	Body   []byte
}

func (e *InvokeError) Error() string {
	return fmt.Sprintf("lambdatest: invoke: status %d: %s", e.Status, bytes.TrimSpace(e.Body))
}

// Invoke sends one event and returns the function's response payload. A
// handler error comes back as the payload Lambda would return
// ({"errorMessage": ..., "errorType": ...}) with a nil error; a failed
// invocation (crash, timeout) as an *InvokeError.
func (f *Function) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+InvokePath, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lambdatest: invoke: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("lambdatest: invoke: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, &InvokeError{Status: resp.StatusCode, Body: b}
	}
	return b, nil
}

// Output is what the emulator and the function printed so far.
func (f *Function) Output() string { return f.out.String() }

// Stop kills the emulator and the function. It is safe to call twice.
func (f *Function) Stop() {
	f.once.Do(func() {
		if f.cmd.Process != nil {
			_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		}
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// Exited reports whether the emulator process has exited.
func (f *Function) Exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// Env joins NAME=value pairs for Config.Env from a map, sorted for stable logs.
func Env(kv map[string]string) []string {
	var out []string
	for k, v := range kv {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
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
	if l.b.Len() > 4<<20 {
		tail := append([]byte(nil), l.b.Bytes()[l.b.Len()-1<<20:]...)
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

// HTTPEvent sends one HTTP request to an API function under the emulator as
// an API Gateway v2 event built from template (a real event payload from
// testdata): method, path and query, the bearer token (if any) and a JSON
// body (if non-nil). It returns the response's status and body.
func HTTPEvent(t testing.TB, fn *Function, template []byte, method, pathQuery, token string, body any) (int, []byte) {
	t.Helper()
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(template, &ev); err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(pathQuery, "?")
	ev.RawPath, ev.RawQueryString = path, query
	ev.RequestContext.HTTP.Method, ev.RequestContext.HTTP.Path = method, path
	if ev.Headers == nil {
		ev.Headers = map[string]string{}
	}
	if token != "" {
		ev.Headers["authorization"] = "Bearer " + token
	}
	ev.Body = ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		ev.Body = string(b)
		ev.Headers["content-type"] = "application/json"
		ev.Headers["content-length"] = fmt.Sprint(len(b))
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := fn.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pathQuery, err)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode == 0 {
		t.Fatalf("%s %s: not an HTTP response: %s", method, pathQuery, out)
	}
	rb := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if rb, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, rb
}
