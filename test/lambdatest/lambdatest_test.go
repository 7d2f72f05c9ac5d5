package lambdatest_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/lambdatest"
)

// Not parallel: it sets a variable in the test's own environment to prove the
// function does not inherit it.
func TestEchoFunctionUnderTheEmulator(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "from-the-test-environment")
	bin := lambdatest.Build(t, "./test/lambdatest/testdata/echo")
	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Env: lambdatest.Env(map[string]string{"GREETING": "hello"})})
	ctx := t.Context()

	out, err := fn.Invoke(ctx, []byte(`{"say":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Said, Greeting, AWSSecret string }
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Said != "ping" || r.Greeting != "hello" {
		t.Errorf("reply %s; want the event echoed and GREETING from Config.Env", out)
	}
	if strings.Contains(string(out), "from-the-test-environment") {
		t.Error("the test's own AWS credentials leaked into the function's environment")
	}

	// A handler error is a payload, as Lambda returns it.
	out, err = fn.Invoke(ctx, []byte(`{"fail":true}`))
	if err != nil || !strings.Contains(string(out), `"errorMessage":"asked to fail"`) {
		t.Errorf("handler error: %s, %v", out, err)
	}
	// The same environment serves the next invocation.
	if out, err := fn.Invoke(ctx, []byte(`{"say":"again"}`)); err != nil || !strings.Contains(string(out), `"again"`) {
		t.Errorf("second invocation: %s, %v", out, err)
	}
	// A crash is an invocation failure.
	_, err = fn.Invoke(ctx, []byte(`{"crash":true}`))
	var ie *lambdatest.InvokeError
	if err == nil || (!errors.As(err, &ie) && !strings.Contains(err.Error(), "invoke")) {
		t.Errorf("crashing function: err %v, want an invocation failure", err)
	}
	fn.Stop()
	if !fn.Exited() {
		t.Error("emulator still running after Stop")
	}
}

func TestRIEIsInstalled(t *testing.T) {
	t.Parallel()
	if _, err := lambdatest.RIE(); err != nil {
		t.Fatal(err)
	}
}
