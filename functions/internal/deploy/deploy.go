package deploy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/targetsource"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/httpapi"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/launch"
	"github.com/jitgate/jitgate/broker/launch/ecs"
	launchlambda "github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/dynamo"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/functions/internal/vaultauth"
)

// Clients are the AWS and Vault clients of one execution environment.
type Clients struct {
	AWS      aws.Config
	DynamoDB *dynamodb.Client
	S3       *s3.Client
	Lambda   *awslambda.Client
	ECS      *awsecs.Client
	// Vault is nil when VAULT_ADDR is unset.
	Vault *vaultapi.Client

	env         Env
	vaultMu     sync.Mutex
	vaultExpiry time.Time // of an AWS-login token; zero for a static token
}

// NewClients loads the SDK's default configuration (region, the function's
// role, AWS_ENDPOINT_URL*) and builds the clients.
func NewClients(ctx context.Context, env Env) (*Clients, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("deploy: aws config: %w", err)
	}
	c := &Clients{
		AWS:      cfg,
		DynamoDB: dynamodb.NewFromConfig(cfg),
		S3:       s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = env.PathStyle }),
		Lambda:   awslambda.NewFromConfig(cfg),
		ECS:      awsecs.NewFromConfig(cfg),
	}
	if env.VaultAddr != "" {
		vc := vaultapi.DefaultConfig() // reads VAULT_ADDR, VAULT_CACERT, …
		if vc.Error != nil {
			return nil, fmt.Errorf("deploy: vault config: %w", vc.Error)
		}
		vc.MaxRetries = 2
		v, err := vaultapi.NewClient(vc) // reads VAULT_TOKEN when set
		if err != nil {
			return nil, fmt.Errorf("deploy: vault client: %w", err)
		}
		c.Vault = v
	}
	c.env = env
	if err := c.RefreshVault(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// RefreshVault logs in to Vault with the function's AWS role (when
// JITGATE_VAULT_AWS_ROLE is set) if the client has no token yet or its token
// ends within two minutes. The API and the sweeper call it at the start of
// every invocation; a static VAULT_TOKEN is left alone.
func (c *Clients) RefreshVault(ctx context.Context) error {
	if c.Vault == nil || c.env.VaultAWSRole == "" {
		return nil
	}
	c.vaultMu.Lock()
	defer c.vaultMu.Unlock()
	now := time.Now()
	if !c.vaultExpiry.IsZero() && now.Add(2*time.Minute).Before(c.vaultExpiry) {
		return nil
	}
	secret, err := vaultauth.Login(ctx, c.Vault, c.AWS.Credentials, vaultauth.Config{
		Mount: c.env.VaultAWSMount, Role: c.env.VaultAWSRole, ServerID: c.env.VaultServerID})
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	if secret.Auth.LeaseDuration > 0 {
		c.vaultExpiry = now.Add(time.Duration(secret.Auth.LeaseDuration) * time.Second)
	} else {
		c.vaultExpiry = now.Add(100 * 365 * 24 * time.Hour) // a token without a TTL
	}
	return nil
}

// Store opens the DynamoDB grant store.
func (c *Clients) Store(env Env) (*dynamo.Store, error) {
	return dynamo.New(dynamo.Config{Client: c.DynamoDB, Table: env.Table})
}

// Sink returns an S3 sink for keys under prefix in the bucket.
func (c *Clients) Sink(env Env, prefix, contentType string) (*s3sink.Sink, error) {
	cfg := s3sink.Config{Client: c.S3, Bucket: env.Bucket, Prefix: prefix, KMSKeyID: env.KMSKeyID,
		LockMode: env.LockMode, ContentType: contentType}
	if env.LockMode != s3sink.NoLock {
		cfg.Retention = time.Duration(env.LockDays) * 24 * time.Hour
	}
	return s3sink.New(cfg)
}

// RecordingKey is the sink key of a grant's recording (the spooled file's name).
func RecordingKey(grantID string) string { return grantID + record.Ext }

// Fetch reads a small configuration object: "s3://bucket/key" or "file:/path".
func (c *Clients) Fetch(ctx context.Context, uri string) ([]byte, error) {
	const limit = 4 << 20
	switch {
	case strings.HasPrefix(uri, "file:"):
		f, err := os.Open(strings.TrimPrefix(uri, "file:"))
		if err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		defer f.Close()
		return readLimited(f, limit, uri)
	case strings.HasPrefix(uri, "s3://"):
		u, err := url.Parse(uri)
		if err != nil || u.Host == "" || len(u.Path) < 2 {
			return nil, fmt.Errorf("deploy: %q is not s3://bucket/key", uri)
		}
		out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Host), Key: aws.String(strings.TrimPrefix(u.Path, "/"))})
		if err != nil {
			return nil, fmt.Errorf("deploy: get %s: %w", uri, err)
		}
		defer out.Body.Close()
		return readLimited(out.Body, limit, uri)
	}
	return nil, fmt.Errorf("deploy: %q: want s3://bucket/key or file:/path", uri)
}

func readLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("deploy: read %s: %w", what, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("deploy: %s is larger than %d bytes", what, limit)
	}
	return b, nil
}

// Broker is the broker service as the API and the sweeper run it.
type Broker struct {
	Service  *broker.Service
	Handler  http.Handler
	Store    *dynamo.Store
	Policy   *policy.Policy
	Audit    *AuditShipper
	Sessions *ecs.Launcher // nil when session tasks are not configured
	Clients  *Clients
	Logger   *slog.Logger
}

// NewBroker builds the broker of one execution environment: policy, grant
// store, audit log (shipped to S3 by Audit.Ship), credential sources, the
// Lambda and ECS launchers, the token verifier and the HTTP API.
func NewBroker(ctx context.Context, env Env, c *Clients, log *slog.Logger) (*Broker, error) {
	if err := env.Require(NeedTable | NeedBucket | NeedPolicy); err != nil {
		return nil, err
	}
	raw, err := c.Fetch(ctx, env.PolicyURI)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(env.PolicyURI, raw)
	if err != nil {
		return nil, fmt.Errorf("deploy: policy: %w", err)
	}
	store, err := c.Store(env)
	if err != nil {
		return nil, err
	}
	auditSink, err := c.Sink(env, env.AuditPrefix, "application/x-ndjson")
	if err != nil {
		return nil, err
	}
	shipper, err := NewAuditShipper(auditSink, env.FunctionName, log)
	if err != nil {
		return nil, err
	}
	sources := map[string]credentials.Source{}
	for i := range p.Targets {
		t := &p.Targets[i]
		src, err := buildSource(t, c.Vault)
		if err != nil {
			return nil, fmt.Errorf("deploy: target %s: %w", t.Name, err)
		}
		sources[t.Name] = src
	}
	router := &ModeRouter{}
	var sessions *ecs.Launcher
	recordings, err := c.Sink(env, env.RecordingPrefix, "application/x-ndjson")
	if err != nil {
		return nil, err
	}
	if c.Vault != nil {
		wrapper := launchlambda.VaultWrapper{Client: c.Vault}
		if env.RunnerFunction != "" {
			if router.Exec, err = launchlambda.New(launchlambda.Config{Client: c.Lambda, Function: env.RunnerFunction, Wrapper: wrapper, Logger: log}); err != nil {
				return nil, err
			}
		}
		if env.ECS.Enabled() {
			sessions, err = ecs.New(ecs.Config{Client: c.ECS, Cluster: env.ECS.Cluster, TaskDefinition: env.ECS.TaskDefinition,
				Container: env.ECS.Container, Subnets: env.ECS.Subnets, SecurityGroups: env.ECS.SecurityGroups, Port: env.ECS.Port,
				StopGrace: env.ECS.StopGrace, PollEvery: env.ECS.Poll,
				Wrapper: wrapper, Logger: log, RecordingURI: func(id string) string { return recordings.URI(RecordingKey(id)) }})
			if err != nil {
				return nil, err
			}
			router.Session = sessions
		}
	}
	maskKey, err := loadMaskKey(ctx, c, env.MaskKeyURI)
	if err != nil {
		return nil, err
	}
	svc, err := broker.New(broker.Config{
		Policy: p, Store: store, Audit: shipper.Log(), Sources: sources, Launcher: router,
		// Remote proxies spool in their own /tmp; this names the directory
		// they use, for the spec.
		RecordDir: filepath.Join(os.TempDir(), "jitgate-spool"), MaskTokenKey: maskKey,
		RunTimeout: env.RunTimeout, Logger: log, Recordings: recordings,
	})
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	verifier, err := identity.NewVerifier(p.IssuerConfigs(), identity.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("deploy: issuers: %w", err)
	}
	h, err := httpapi.New(httpapi.Config{Service: svc, Verifier: verifier, Logger: log, MaxWait: env.MaxWait})
	if err != nil {
		return nil, err
	}
	return &Broker{Service: svc, Handler: h, Store: store, Policy: p, Audit: shipper, Sessions: sessions, Clients: c, Logger: log}, nil
}

func loadMaskKey(ctx context.Context, c *Clients, uri string) ([]byte, error) {
	if uri == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return b, nil
	}
	b, err := c.Fetch(ctx, uri)
	if err != nil {
		return nil, err
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("deploy: mask key %s has %d bytes; want at least 32", uri, len(b))
	}
	return b, nil
}

// buildSource makes a target's credential source, as the local stack does
// (broker/credentials/targetsource). In AWS, Vault is the production source;
// the local minter (admin_dsn) and configured tokens are accepted for
// LocalStack trials.
func buildSource(t *policy.Target, v *vaultapi.Client) (credentials.Source, error) {
	return targetsource.New(t, targetsource.Env{
		Resolve: resolveRef,
		Vault: func() (*vaultapi.Client, error) {
			if v == nil {
				return nil, errors.New("source vault needs VAULT_ADDR (and a Vault token)")
			}
			return v, nil
		},
	})
}

// resolveRef reads "env:NAME" and "file:PATH" references; anything else is literal.
func resolveRef(ref string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		v := os.Getenv(strings.TrimPrefix(ref, "env:"))
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", strings.TrimPrefix(ref, "env:"))
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(ref, "file:"))
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case ref == "":
		return "", errors.New("not set")
	}
	return ref, nil
}

// ModeRouter sends exec grants to the Lambda runner and session grants to ECS.
type ModeRouter struct {
	Exec, Session launch.Launcher
}

var _ launch.Launcher = (*ModeRouter)(nil)

// Launch implements launch.Launcher.
func (r *ModeRouter) Launch(ctx context.Context, g *spec.Grant) (launch.Handle, error) {
	var l launch.Launcher
	var how string
	switch g.Mode {
	case spec.Exec:
		l, how = r.Exec, "JITGATE_RUNNER_FUNCTION and VAULT_ADDR"
	case spec.Session:
		l, how = r.Session, "JITGATE_ECS_* and VAULT_ADDR"
	}
	if l == nil {
		return nil, fmt.Errorf("deploy: %s grants are not enabled in this deployment (set %s)", g.Mode, how)
	}
	return l.Launch(ctx, g)
}

// AuditShipper keeps the broker's hash-chained audit log in the execution
// environment's /tmp and copies it to S3 after every invocation: one object
// per environment (<function>/<start>-<random>.jsonl), each upload a new
// version of it, locked like the recordings. A chain is therefore per
// execution environment; `jitgate audit verify` checks each object.
type AuditShipper struct {
	log     *audit.Log
	path    string
	key     string
	sink    *s3sink.Sink
	logger  *slog.Logger
	mu      sync.Mutex
	shipped int64
}

// NewAuditShipper opens a fresh audit log in a private temporary directory.
func NewAuditShipper(sink *s3sink.Sink, function string, log *slog.Logger) (*AuditShipper, error) {
	dir, err := os.MkdirTemp("", "jitgate-audit-")
	if err != nil {
		return nil, fmt.Errorf("deploy: audit dir: %w", err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		return nil, err
	}
	if function == "" {
		function = "local"
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	key := fmt.Sprintf("%s/%s-%x.jsonl", safeKey(function), time.Now().UTC().Format("20060102T150405Z"), b)
	return &AuditShipper{log: l, path: path, key: key, sink: sink, logger: log}, nil
}

func safeKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Log is the audit log the broker appends to.
func (a *AuditShipper) Log() *audit.Log { return a.log }

// Key is the S3 key (under the audit prefix) this environment ships to.
func (a *AuditShipper) Key() string { return a.key }

// Ship uploads the log if it grew since the last upload.
func (a *AuditShipper) Ship(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	seq, _ := a.log.Head()
	if seq == a.shipped {
		return nil
	}
	f, err := os.Open(a.path)
	if err != nil {
		return fmt.Errorf("deploy: ship audit log: %w", err)
	}
	defer f.Close()
	if err := a.sink.Store(ctx, a.key, f); err != nil {
		return fmt.Errorf("deploy: ship audit log: %w", err)
	}
	a.shipped = seq
	return nil
}

// GrantLive reports whether a grant still runs: Active and before its
// deadline. The sweeper uses it to find orphaned session tasks.
func GrantLive(store grant.Store, now func() time.Time) func(ctx context.Context, id string) (bool, error) {
	return func(ctx context.Context, id string) (bool, error) {
		g, err := store.Get(ctx, id)
		if errors.Is(err, grant.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return g.State == grant.Active && now().Before(g.ExpiresAt), nil
	}
}
