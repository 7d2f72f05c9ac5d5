// Package lambda launches the ephemeral proxy of an exec-mode grant as one
// synchronous invocation of the runner function (functions/runner) in AWS. It
// is the launch step of the flow (grant → credentials → launch → engine): the
// broker hands it the complete spec.Grant, credential included, and gets back
// the masked result.
//
// The credential never travels in the invocation. Launch puts the spec into
// Vault behind a single-use response-wrapping token (Wrapper) and invokes the
// runner with only the grant id and that token (Invocation). The runner
// unwraps it once; a token that was already used (intercepted) fails the run.
// Lambda's own logs and invocation records therefore never hold a credential,
// a client secret or a mask key.
//
//	l, err := lambda.New(lambda.Config{Client: awslambda.NewFromConfig(cfg), Function: "jitgate-runner",
//		Wrapper: lambda.VaultWrapper{Client: vaultClient}})
//	h, err := l.Launch(ctx, grantSpec)   // starts the invocation
//	st, err := h.Ready(ctx)              // StatusResult with the masked rows, or StatusError
//	exit, err := h.Wait(ctx)             // StatusExit naming the recording (s3://…)
package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/jitgate/jitgate/broker/launch"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Invocation is the runner's event: the grant id and a single-use Vault
// response-wrapping token, nothing else.
type Invocation struct {
	GrantID   string `json:"grant_id"`
	WrapToken string `json:"wrap_token"`
}

// String and LogValue keep the token out of logs.
func (i Invocation) String() string {
	return fmt.Sprintf("Invocation{grant %s, wrap token [REDACTED]}", i.GrantID)
}

// LogValue implements slog.LogValuer.
func (i Invocation) LogValue() slog.Value {
	return slog.GroupValue(slog.String("grant_id", i.GrantID), slog.String("wrap_token", "[REDACTED]"))
}

// Response is the runner's answer: the status lines the proxy produced, in
// order (a result or an error, then exit).
type Response struct {
	Statuses []spec.Status `json:"statuses"`
}

// API is the part of the Lambda client the launcher uses.
type API interface {
	Invoke(ctx context.Context, in *awslambda.InvokeInput, opts ...func(*awslambda.Options)) (*awslambda.InvokeOutput, error)
}

// DefaultWrapTTL is how long the wrapping token lives: long enough for a
// cold start, short enough that a leaked token is soon worthless.
const DefaultWrapTTL = 2 * time.Minute

// Config configures the launcher.
type Config struct {
	// Client invokes the runner. Required.
	Client API
	// Function is the runner's name or ARN (optionally with :alias). Required.
	Function string
	// Wrapper turns the spec into a wrapping token. Required.
	Wrapper Wrapper
	// WrapTTL is the wrapping token's lifetime; default DefaultWrapTTL.
	WrapTTL time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Now is the clock for synthesized statuses; default time.Now.
	Now func() time.Time
}

// Launcher invokes the runner function.
type Launcher struct{ cfg Config }

var _ launch.Launcher = (*Launcher)(nil)

// New checks cfg.
func New(cfg Config) (*Launcher, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("launch/lambda: Client is required")
	case cfg.Function == "":
		return nil, errors.New("launch/lambda: Function is required")
	case cfg.Wrapper == nil:
		return nil, errors.New("launch/lambda: Wrapper is required: the spec reaches the runner only as a Vault wrapping token")
	case cfg.WrapTTL < 0:
		return nil, fmt.Errorf("launch/lambda: WrapTTL %s is negative", cfg.WrapTTL)
	}
	if cfg.WrapTTL == 0 {
		cfg.WrapTTL = DefaultWrapTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Launcher{cfg: cfg}, nil
}

// Launch wraps g and starts the invocation. Only exec grants run in Lambda.
func (l *Launcher) Launch(ctx context.Context, g *spec.Grant) (launch.Handle, error) {
	if g == nil {
		return nil, errors.New("launch/lambda: nil grant")
	}
	if g.Mode != spec.Exec {
		return nil, fmt.Errorf("launch/lambda: grant %s is a %s grant; the Lambda runner serves exec grants only", g.ID, g.Mode)
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("launch/lambda: %w", err)
	}
	tok, err := l.cfg.Wrapper.WrapGrant(ctx, g, l.cfg.WrapTTL)
	if err != nil {
		return nil, fmt.Errorf("launch/lambda: %w", err)
	}
	payload, err := json.Marshal(Invocation{GrantID: g.ID, WrapToken: tok})
	if err != nil {
		return nil, fmt.Errorf("launch/lambda: encode invocation: %w", err)
	}
	ictx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if dl, ok := ctx.Deadline(); ok {
		ictx, cancel = context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	h := &handle{id: g.ID, cancel: cancel, done: make(chan struct{}), now: l.cfg.Now}
	l.cfg.Logger.Info("invoking runner", "grant", g.ID, "function", l.cfg.Function)
	go h.invoke(ictx, l.cfg.Client, l.cfg.Function, payload)
	return h, nil
}

type handle struct {
	id     string
	cancel context.CancelFunc
	now    func() time.Time
	done   chan struct{} // closed when firstSt and lastSt are set

	firstSt, lastSt spec.Status
}

func (h *handle) invoke(ctx context.Context, c API, fn string, payload []byte) {
	defer h.cancel()
	statuses := h.call(ctx, c, fn, payload)
	first, last := statuses[0], statuses[len(statuses)-1]
	for _, st := range statuses {
		if st.Type != spec.StatusExit {
			first = st
			break
		}
	}
	h.firstSt, h.lastSt = first, last
	close(h.done)
}

// call invokes the runner and always returns at least one status.
func (h *handle) call(ctx context.Context, c API, fn string, payload []byte) []spec.Status {
	fail := func(code, format string, args ...any) []spec.Status {
		return []spec.Status{{Type: spec.StatusError, GrantID: h.id, Time: h.now().UTC(), Code: code, Error: fmt.Sprintf(format, args...)}}
	}
	out, err := c.Invoke(ctx, &awslambda.InvokeInput{
		FunctionName:   aws.String(fn),
		InvocationType: types.InvocationTypeRequestResponse,
		Payload:        payload,
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fail(spec.CodeExpired, "launch/lambda: runner did not answer in time: %v", err)
	case err != nil:
		return fail(spec.CodeInternal, "launch/lambda: invoke %s: %v", fn, err)
	case out.FunctionError != nil:
		var fe struct {
			ErrorMessage string `json:"errorMessage"`
			ErrorType    string `json:"errorType"`
		}
		_ = json.Unmarshal(out.Payload, &fe)
		return fail(spec.CodeInternal, "launch/lambda: runner failed (%s): %s %s", aws.ToString(out.FunctionError), fe.ErrorType, fe.ErrorMessage)
	}
	var resp Response
	if err := json.Unmarshal(out.Payload, &resp); err != nil {
		return fail(spec.CodeInternal, "launch/lambda: runner answered something that is not a response: %v", err)
	}
	if len(resp.Statuses) == 0 {
		return fail(spec.CodeInternal, "launch/lambda: runner answered without a status")
	}
	for i := range resp.Statuses {
		if resp.Statuses[i].GrantID != h.id {
			return fail(spec.CodeInternal, "launch/lambda: runner answered for grant %q", resp.Statuses[i].GrantID)
		}
	}
	return resp.Statuses
}

// Ready waits for the runner's answer: StatusResult or StatusError.
func (h *handle) Ready(ctx context.Context) (spec.Status, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return spec.Status{}, ctx.Err()
	}
	if h.firstSt.Type == spec.StatusError {
		return h.firstSt, fmt.Errorf("launch/lambda: runner: %s: %s", h.firstSt.Code, h.firstSt.Error)
	}
	return h.firstSt, nil
}

// Wait returns the runner's last status (StatusExit naming the recording).
func (h *handle) Wait(ctx context.Context) (spec.Status, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return spec.Status{}, ctx.Err()
	}
	if h.lastSt.Type == spec.StatusError {
		return h.lastSt, fmt.Errorf("launch/lambda: runner: %s: %s", h.lastSt.Code, h.lastSt.Error)
	}
	return h.lastSt, nil
}

// Stop abandons the invocation. A running Lambda invocation cannot be
// stopped from outside; its grant's deadline (enforced by the proxy) and the
// broker's revocation end it.
func (h *handle) Stop() error {
	h.cancel()
	<-h.done
	return nil
}
