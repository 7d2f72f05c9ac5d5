package spec

import "time"

// StatusType names a message the proxy sends back to whoever launched it.
type StatusType string

const (
	// StatusReady: a session proxy is listening at Addr.
	StatusReady StatusType = "ready"
	// StatusResult: an exec grant's operation finished; Result holds the masked result.
	StatusResult StatusType = "result"
	// StatusError: the operation or session failed; Code and Error say why.
	StatusError StatusType = "error"
	// StatusExit: the proxy is about to exit; Recording names the recording it wrote.
	StatusExit StatusType = "exit"
)

// Error codes carried by StatusError.
const (
	CodeBlocked   = "blocked"   // the guard refused the operation
	CodeUpstream  = "upstream"  // the target could not be reached or failed
	CodeStatement = "statement" // the operation ran and the target refused or failed it
	CodeRecording = "recording" // the recording could not be written (the session is refused)
	CodeBadSpec   = "bad_spec"  // the grant spec was invalid
	CodeInternal  = "internal"
	CodeExpired   = "expired"
)

// Status is one line of the proxy → launcher channel (JSON Lines on the local
// launcher's stdout pipe; the Lambda runner's response).
type Status struct {
	Type    StatusType `json:"type"`
	GrantID string     `json:"grant_id"`
	Time    time.Time  `json:"time"`
	Addr    string     `json:"addr,omitempty"`
	// HostKey is an SSH proxy's host key (authorized_keys format) on StatusReady.
	HostKey string `json:"host_key,omitempty"`
	// Certificate is a Kubernetes proxy's per-grant TLS certificate (PEM) on
	// StatusReady, for the kubeconfig's certificate-authority-data.
	Certificate string  `json:"certificate,omitempty"`
	Result      *Result `json:"result,omitempty"`
	Code        string  `json:"code,omitempty"`
	Error       string  `json:"error,omitempty"`
	Recording   string  `json:"recording,omitempty"`
	// Metrics is where a session proxy serves Prometheus metrics
	// (http://Metrics/metrics) on StatusReady, when Grant.Metrics asked for it.
	Metrics string `json:"metrics,omitempty"`
}

// Result is the masked result of one exec-mode operation, protocol-neutral.
type Result struct {
	Columns []string    `json:"columns,omitempty"`
	Rows    [][]*string `json:"rows,omitempty"`
	Tag     string      `json:"tag,omitempty"`
	Notices []string    `json:"notices,omitempty"`
	// Output is the (masked) byte output of non-tabular operations (shell, HTTP).
	Output string `json:"output,omitempty"`
	// Truncated says rows were cut at the proxy's row limit.
	Truncated bool `json:"truncated,omitempty"`
}
