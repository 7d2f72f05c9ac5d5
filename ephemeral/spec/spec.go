// Package spec is the contract between the broker and an ephemeral proxy: the one
// grant a proxy serves, the credential it injects upstream, and the guard, mask and
// record settings it enforces. The broker imports spec; ephemeral/ never imports broker/.
//
// A Grant travels from the broker's launcher to the proxy over a private channel
// (a pipe for the local launcher, a Vault response-wrapped token for remote ones),
// never in argv or the environment.
package spec

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Protocol is the wire protocol an engine speaks. It is a closed set.
type Protocol int

const (
	ProtocolUnknown Protocol = iota
	Postgres
	SSH
	HTTP
	Kube
	// Config reads configuration keys (Vault KV v2 or the embedded store)
	// through ephemeral/engine/config: exec mode only, values masked.
	Config
)

var protocolNames = map[Protocol]string{Postgres: "postgres", SSH: "ssh", HTTP: "http", Kube: "kube", Config: "config"}

func (p Protocol) String() string {
	if n, ok := protocolNames[p]; ok {
		return n
	}
	return "unknown"
}

// ParseProtocol maps a policy's target kind to a Protocol.
func ParseProtocol(s string) (Protocol, error) {
	for p, n := range protocolNames {
		if n == s {
			return p, nil
		}
	}
	return ProtocolUnknown, fmt.Errorf("spec: unknown protocol %q", s)
}

func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *Protocol) UnmarshalText(b []byte) error {
	if string(b) == "unknown" {
		*p = ProtocolUnknown
		return nil
	}
	v, err := ParseProtocol(string(b))
	*p = v
	return err
}

// Mode says whether a grant runs one named operation (Exec) or opens a native
// endpoint for a TTL (Session).
type Mode int

const (
	ModeUnknown Mode = iota
	Exec
	Session
)

func (m Mode) String() string {
	switch m {
	case Exec:
		return "exec"
	case Session:
		return "session"
	}
	return "unknown"
}

// ParseMode parses "exec" or "session".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "exec":
		return Exec, nil
	case "session":
		return Session, nil
	}
	return ModeUnknown, fmt.Errorf("spec: unknown mode %q", s)
}

func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }
func (m *Mode) UnmarshalText(b []byte) error {
	if string(b) == "unknown" {
		*m = ModeUnknown
		return nil
	}
	v, err := ParseMode(string(b))
	*m = v
	return err
}

// Access is the level of access a grant carries on a target. Levels are ordered:
// Read < Write < Admin. The zero value is AccessNone, which allows nothing.
type Access int

const (
	AccessNone Access = iota
	Read
	Write
	Admin
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return "none"
}

// ParseAccess parses "read", "write" or "admin".
func ParseAccess(s string) (Access, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "admin":
		return Admin, nil
	}
	return AccessNone, fmt.Errorf("spec: unknown access level %q (want read, write or admin)", s)
}

func (a Access) MarshalText() ([]byte, error) { return []byte(a.String()), nil }
func (a *Access) UnmarshalText(b []byte) error {
	if string(b) == "none" {
		*a = AccessNone
		return nil
	}
	v, err := ParseAccess(string(b))
	*a = v
	return err
}

// Secret is a string that never prints, logs or marshals its value by accident.
// Use Reveal where the value must really be used (an upstream login).
// Marshalling a Secret for the broker → proxy channel uses WireSecret.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value. Call it only at the point of use.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

const redacted = "[REDACTED]"

func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return redacted }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }
func (s Secret) MarshalJSON() ([]byte, error)  { return json.Marshal(redacted) }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s *Secret) UnmarshalJSON(b []byte) error {
	return fmt.Errorf("spec: a Secret cannot be unmarshalled; use WireSecret")
}
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// WireSecret is the one place a Secret's value is serialized: inside a Grant sent
// over the private broker → proxy channel. It must not be used for logs or APIs.
type WireSecret string

// Wire returns the secret for the private channel.
func (s Secret) Wire() WireSecret { return WireSecret(s.v) }

// Secret converts back.
func (w WireSecret) Secret() Secret { return Secret{v: string(w)} }

// A WireSecret marshals its value to JSON (that is its job on the private
// channel) but never prints it: a Credential or Grant in a log line or a %v
// shows [REDACTED].
func (w WireSecret) String() string                { return redacted }
func (w WireSecret) GoString() string              { return redacted }
func (w WireSecret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }
func (w WireSecret) LogValue() slog.Value          { return slog.StringValue(redacted) }

// Credential is what the proxy uses to log in upstream. The agent never sees it.
type Credential struct {
	// Username is the upstream login (a per-grant PostgreSQL role, an SSH principal).
	Username string `json:"username"`
	// Password is the upstream password (PostgreSQL); empty for certificate logins.
	Password WireSecret `json:"password,omitempty"`
	// PrivateKey and Certificate are PEM / authorized_keys encoded for SSH grants.
	PrivateKey  WireSecret `json:"private_key,omitempty"`
	Certificate string     `json:"certificate,omitempty"`
	// Token is a bearer token for HTTP and Kubernetes targets.
	Token WireSecret `json:"token,omitempty"`
	// Values are the configuration values a config grant may show (key →
	// value), read by the broker from its KV store for the grant's keys only.
	Values map[string]WireSecret `json:"values,omitempty"`
	// LeaseID identifies the credential at its source, for revocation and audit.
	LeaseID string `json:"lease_id"`
	// Expires is when the source will invalidate the credential by itself.
	Expires time.Time `json:"expires"`
}

// Target is what the proxy connects to.
type Target struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	// Address is host:port of the upstream.
	Address string `json:"address"`
	// Database is the PostgreSQL database the grant is limited to.
	Database string `json:"database,omitempty"`
	// User is the login on the target host (SSH) the certificate names as principal.
	User string `json:"user,omitempty"`
	// KnownHosts are known_hosts lines (plain keys or @cert-authority) the
	// target's host key must match (SSH). Empty → the proxy refuses to connect.
	KnownHosts []string `json:"known_hosts,omitempty"`
	// CA is the PEM bundle the upstream's TLS certificate must chain to
	// (Kubernetes API servers). Empty → the system roots; never skipped.
	CA string `json:"ca,omitempty"`
	// ServerName overrides the TLS server name checked upstream.
	ServerName string `json:"server_name,omitempty"`
}

// Guard carries the guard settings from the matching policy rule.
type Guard struct {
	Access Access `json:"access"`
	// DenyFunctions are added to the guard's default list of dangerous functions.
	DenyFunctions []string `json:"deny_functions,omitempty"`
	// AllowFunctions are removed from the default list (admin grants only).
	AllowFunctions []string `json:"allow_functions,omitempty"`
	// DenyKinds / AllowKinds refine statement kinds (e.g. "TRUNCATE", "COPY").
	DenyKinds  []string `json:"deny_kinds,omitempty"`
	AllowKinds []string `json:"allow_kinds,omitempty"`
	// Commands is the command policy of SSH and Kubernetes exec grants.
	Commands Commands `json:"commands,omitempty"`
	// HTTP are the method/path rules of HTTP grants (deny wins; no allow → refused).
	HTTP []HTTPRule `json:"http,omitempty"`
	// Kube is the Kubernetes scope of kube grants.
	Kube KubeScope `json:"kube,omitempty"`
	// Config is the key scope of config grants.
	Config ConfigScope `json:"config,omitempty"`
}

// ConfigScope is what a config grant may read. Keys are "<secret path>/<field>"
// below the target's KV prefix ("flags/db_url").
type ConfigScope struct {
	// Keys are the key globs the target exposes ("flags/*"); a glob matches
	// within its last segment only. A key outside them is never shown.
	Keys []string `json:"keys,omitempty"`
	// Reveal are key globs whose values are shown unmasked; every other value
	// that looks secret (detectors, its key name, high entropy) is masked.
	Reveal []string `json:"reveal,omitempty"`
}

// KubeScope is what a Kubernetes grant may reach: pods in one namespace. Commands
// run by exec are checked by Guard.Commands as for SSH.
type KubeScope struct {
	// Namespace is the one namespace the grant covers.
	Namespace string `json:"namespace"`
	// Pods and Containers are name globs ("web-*"); empty means any.
	Pods       []string `json:"pods,omitempty"`
	Containers []string `json:"containers,omitempty"`
	// Exec allows pods/exec (commands checked by Guard.Commands); get/list of
	// pods in the namespace is allowed on every kube grant.
	Exec bool `json:"exec,omitempty"`
	// Attach, PortForward and CopyFiles (kubectl cp, i.e. exec of tar) are
	// refused unless set.
	Attach      bool `json:"attach,omitempty"`
	PortForward bool `json:"port_forward,omitempty"`
	CopyFiles   bool `json:"copy_files,omitempty"`
	// Ports are the pod ports a port-forward may reach; empty refuses every
	// port even with PortForward set (fail closed).
	Ports []int `json:"ports,omitempty"`
}

// HTTPRule allows or denies requests by method and path pattern
// ("/v1/users/{id}", "/v1/items/*", "/v1/files/**").
type HTTPRule struct {
	Methods []string `json:"methods,omitempty"`
	Path    string   `json:"path"`
	Effect  string   `json:"effect,omitempty"` // allow (default) or deny
}

// Commands is what a shell-command grant may run.
type Commands struct {
	// Allow lists command names (or path globs) that may run; empty means any
	// command not denied.
	Allow []string `json:"allow,omitempty"`
	// Deny lists command names refused wherever they appear in a command line.
	Deny []string `json:"deny,omitempty"`
	// Interactive allows shell sessions (recorded, not filtered).
	Interactive bool `json:"interactive,omitempty"`
	// FileTransfer allows the sftp subsystem (and so scp).
	FileTransfer bool `json:"file_transfer,omitempty"`
	// PortForwarding allows direct-tcpip channels to the target host itself.
	PortForwarding bool `json:"port_forwarding,omitempty"`
}

// Mask carries the masking settings of the target.
type Mask struct {
	// Columns are schema.table.column patterns; "*" matches one part.
	Columns []string `json:"columns,omitempty"`
	// Detectors are content detector names (credit_card, email, ...).
	Detectors []string `json:"detectors,omitempty"`
	// Style is "full" (default), "partial" or "token".
	Style string `json:"style,omitempty"`
	// JSONFields are JSON paths masked in HTTP responses ("password", "$.users[*].email").
	JSONFields []string `json:"json_fields,omitempty"`
	// TokenKey keys the deterministic "token" style (HMAC-SHA256).
	TokenKey WireSecret `json:"token_key,omitempty"`
}

// Record says where the proxy writes its recording.
type Record struct {
	// Dir is the local directory recordings are written to (spooled before upload).
	Dir string `json:"dir"`
}

// Grant is the whole of what one ephemeral proxy needs to serve one grant.
type Grant struct {
	ID       string `json:"id"`
	Mode     Mode   `json:"mode"`
	Target   Target `json:"target"`
	Identity string `json:"identity"`
	Rule     string `json:"rule"`
	// Operation is the one operation of an exec grant (a SQL statement).
	Operation string `json:"operation,omitempty"`
	// ClientSecret is the one-time grant secret the client authenticates with.
	ClientSecret WireSecret `json:"client_secret"`
	// Listen is the address a session proxy listens on ("127.0.0.1:0" picks a port).
	Listen string `json:"listen,omitempty"`
	// Deadline is when the proxy closes the client and the upstream and exits.
	Deadline   time.Time  `json:"deadline"`
	Credential Credential `json:"credential"`
	Guard      Guard      `json:"guard"`
	Mask       Mask       `json:"mask"`
	Record     Record     `json:"record"`
	// DevLoopback allows cleartext client passwords on loopback (dev mode only).
	DevLoopback bool `json:"dev_loopback,omitempty"`
	// Metrics, when set, is the loopback address ("127.0.0.1:0") a session
	// proxy serves its Prometheus metrics on; the address is reported in the
	// ready status. Empty: no metrics listener. A non-loopback address is
	// refused.
	Metrics string `json:"metrics,omitempty"`
	// Profile, when set, is a file the proxy creates (it must not exist) and
	// writes a Go CPU profile of the whole session to, for benchmarks. Empty:
	// no profile (the default). Only the operator's broker sets it, never a
	// request.
	Profile string `json:"profile,omitempty"`
}

// Validate checks that a grant is complete enough to serve.
func (g *Grant) Validate() error {
	switch {
	case g.ID == "":
		return fmt.Errorf("spec: grant has no id")
	case g.Mode == ModeUnknown:
		return fmt.Errorf("spec: grant %s has no mode", g.ID)
	case g.Target.Protocol == ProtocolUnknown:
		return fmt.Errorf("spec: grant %s has no protocol", g.ID)
	case g.Target.Address == "":
		return fmt.Errorf("spec: grant %s has no target address", g.ID)
	case g.Deadline.IsZero():
		return fmt.Errorf("spec: grant %s has no deadline", g.ID)
	case g.ClientSecret == "" && g.Mode == Session:
		return fmt.Errorf("spec: session grant %s has no client secret", g.ID)
	case g.Mode == Exec && strings.TrimSpace(g.Operation) == "":
		return fmt.Errorf("spec: exec grant %s has no operation", g.ID)
	case g.Guard.Access == AccessNone:
		return fmt.Errorf("spec: grant %s has no access level", g.ID)
	case g.Record.Dir == "":
		return fmt.Errorf("spec: grant %s has no recording directory", g.ID)
	}
	return nil
}
