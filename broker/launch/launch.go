// Package launch starts the ephemeral proxy for one grant. The broker hands a
// Launcher a complete spec.Grant; where the proxy runs (a child process, a Lambda
// invocation, an ECS task) is the implementation's business. The proxy reports back
// with spec.Status messages.
package launch

import (
	"context"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Launcher starts one ephemeral proxy per grant.
type Launcher interface {
	Launch(ctx context.Context, g *spec.Grant) (Handle, error)
}

// Handle is one running proxy.
type Handle interface {
	// Ready waits for the proxy's first answer: StatusReady (session mode),
	// StatusResult (exec mode) or StatusError.
	Ready(ctx context.Context) (spec.Status, error)
	// Wait waits until the proxy has exited and returns its last status
	// (StatusExit with the recording path, or StatusError when it died).
	Wait(ctx context.Context) (spec.Status, error)
	// Stop asks the proxy to end now (it closes the client and upstream and
	// flushes its recording), killing it if it does not exit within its grace.
	Stop() error
}
