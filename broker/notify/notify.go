// Package notify tells approvers that a grant waits for them: a Slack-compatible
// incoming-webhook message and a generic JSON webhook signed with HMAC-SHA256.
// Deliveries are retried with backoff. A notification is information only: its
// failure never approves, denies or blocks anything; the broker audits it.
//
//	n, _ := notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Slack, URL: u}}})
//	res := n.Pending(ctx, notify.Message{...}) // one Result per target
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind is the shape of a webhook.
type Kind int

const (
	// Slack posts {"text": ..., "blocks": ...} to an incoming-webhook URL.
	Slack Kind = iota + 1
	// Webhook posts the Message as JSON with an X-Jitgate-Signature header.
	Webhook
)

func (k Kind) String() string {
	switch k {
	case Slack:
		return "slack"
	case Webhook:
		return "webhook"
	}
	return "unknown"
}

// ParseKind parses "slack" or "webhook".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "slack":
		return Slack, nil
	case "webhook":
		return Webhook, nil
	}
	return 0, fmt.Errorf("notify: unknown kind %q (want slack or webhook)", s)
}

// Target is one place to notify.
type Target struct {
	Kind Kind
	URL  string
	// Secret keys the HMAC-SHA256 signature of generic webhooks. MUST be set
	// for Webhook targets: receivers must verify it before trusting a body.
	Secret []byte
}

// Config configures a Notifier.
type Config struct {
	Targets []Target
	Client  *http.Client
	// Attempts per target (default 4); backoff starts at Backoff (default 500ms) and doubles.
	Attempts int
	Backoff  time.Duration
	Now      func() time.Time
}

// Notifier delivers messages.
type Notifier struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Notifier, error) {
	for i, t := range cfg.Targets {
		if t.Kind != Slack && t.Kind != Webhook {
			return nil, fmt.Errorf("notify: target %d: unknown kind", i)
		}
		if !strings.HasPrefix(t.URL, "https://") && !strings.HasPrefix(t.URL, "http://") {
			return nil, fmt.Errorf("notify: target %d: url %q is not http(s)", i, t.URL)
		}
		if t.Kind == Webhook && len(t.Secret) == 0 {
			return nil, fmt.Errorf("notify: target %d: a generic webhook needs a secret to sign with", i)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Notifier{cfg: cfg}, nil
}

// Message is what approvers need to judge a request.
type Message struct {
	GrantID    string         `json:"grant_id"`
	Requester  string         `json:"requester"`
	Target     string         `json:"target"`
	Access     string         `json:"access"`
	Mode       string         `json:"mode"`
	Operation  string         `json:"operation,omitempty"`
	Statements []Statement    `json:"statements,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Rule       string         `json:"rule"`
	Approvers  []string       `json:"approvers,omitempty"`
	Quorum     int            `json:"quorum"`
	Claims     map[string]any `json:"claims,omitempty"`
	ApproveURL string         `json:"approve_url,omitempty"`
	Expires    time.Time      `json:"pending_until"`
}

// Statement is one classified statement of the operation.
type Statement struct {
	SQL   string `json:"sql"`
	Kind  string `json:"kind"`
	Class string `json:"class"`
}

// Result is the outcome for one target.
type Result struct {
	Target   Target
	Attempts int
	Err      error
}

// Pending notifies every target that msg waits for approval. It returns when
// each target succeeded or ran out of attempts (or ctx ended).
func (n *Notifier) Pending(ctx context.Context, msg Message) []Result {
	out := make([]Result, len(n.cfg.Targets))
	for i, t := range n.cfg.Targets {
		body, err := n.body(t, msg)
		if err != nil {
			out[i] = Result{Target: t, Err: err}
			continue
		}
		out[i] = n.deliver(ctx, t, body)
	}
	return out
}

func (n *Notifier) body(t Target, msg Message) ([]byte, error) {
	if t.Kind == Webhook {
		return json.Marshal(struct {
			Event string `json:"event"`
			Message
		}{"grant.pending", msg})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*jitgate*: %s asks for %s access to *%s* (rule %s)\n", msg.Requester, msg.Access, msg.Target, msg.Rule)
	if msg.Reason != "" {
		fmt.Fprintf(&b, "Reason: %s\n", msg.Reason)
	}
	if repo, ok := msg.Claims["repository"].(string); ok {
		fmt.Fprintf(&b, "Repository: %s", repo)
		if ref, ok := msg.Claims["ref"].(string); ok {
			fmt.Fprintf(&b, " @ %s", ref)
		}
		if sha, ok := msg.Claims["sha"].(string); ok {
			fmt.Fprintf(&b, " (%s)", sha)
		}
		b.WriteString("\n")
	}
	for _, s := range msg.Statements {
		fmt.Fprintf(&b, "```%s```  (%s, %s)\n", s.SQL, s.Kind, s.Class)
	}
	fmt.Fprintf(&b, "Approve: `jitgate approve %s`", msg.GrantID)
	if msg.ApproveURL != "" {
		fmt.Fprintf(&b, " or %s", msg.ApproveURL)
	}
	fmt.Fprintf(&b, " (before %s)", msg.Expires.UTC().Format(time.RFC3339))
	return json.Marshal(map[string]string{"text": b.String()})
}

// Sign returns the X-Jitgate-Signature value for body sent at ts:
// "t=<unix>,v1=<hex hmac-sha256(secret, "<unix>.<body>")>". Receivers recompute
// it and reject stale timestamps (replays).
func Sign(secret, body []byte, ts time.Time) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(unix))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + unix + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header against body, refusing timestamps older than maxAge.
func Verify(secret, body []byte, header string, now time.Time, maxAge time.Duration) error {
	var unix, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			unix = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(unix, 10, 64)
	if err != nil || sig == "" {
		return errors.New("notify: malformed signature header")
	}
	ts := time.Unix(sec, 0)
	if now.Sub(ts) > maxAge || ts.Sub(now) > maxAge {
		return errors.New("notify: signature timestamp outside the allowed window")
	}
	want := Sign(secret, body, ts)
	if !hmac.Equal([]byte(want), []byte("t="+unix+",v1="+sig)) {
		return errors.New("notify: signature mismatch")
	}
	return nil
}

func (n *Notifier) deliver(ctx context.Context, t Target, body []byte) Result {
	res := Result{Target: t}
	wait := n.cfg.Backoff
	for res.Attempts < n.cfg.Attempts {
		res.Attempts++
		res.Err = n.post(ctx, t, body)
		if res.Err == nil {
			return res
		}
		var perm *permanentError
		if errors.As(res.Err, &perm) || res.Attempts == n.cfg.Attempts {
			return res
		}
		select {
		case <-ctx.Done():
			res.Err = fmt.Errorf("%w (after %d attempts: %v)", ctx.Err(), res.Attempts, res.Err)
			return res
		case <-time.After(wait):
		}
		wait *= 2
	}
	return res
}

type permanentError struct{ status int }

func (e *permanentError) Error() string {
	return fmt.Sprintf("notify: receiver answered %d (not retried)", e.status)
}

func (n *Notifier) post(ctx context.Context, t Target, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jitgate-notify/1")
	if t.Kind == Webhook {
		req.Header.Set("X-Jitgate-Signature", Sign(t.Secret, body, n.cfg.Now()))
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("notify: post %s: %w", t.Kind, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == 429 || resp.StatusCode >= 500:
		return fmt.Errorf("notify: receiver answered %d", resp.StatusCode)
	default:
		return &permanentError{status: resp.StatusCode}
	}
}
