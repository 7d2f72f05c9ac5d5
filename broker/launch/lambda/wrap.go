package lambda

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials/vault"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Wrapper hands a grant spec, credential included, to Vault and returns a
// single-use response-wrapping token in its place. The remote task exchanges
// the token for the spec exactly once (UnwrapGrant).
type Wrapper interface {
	WrapGrant(ctx context.Context, g *spec.Grant, ttl time.Duration) (token string, err error)
}

// VaultWrapper wraps with Vault's sys/wrapping/wrap. Its client needs a token
// allowed to call that endpoint (any token can, by Vault's default policy).
type VaultWrapper struct{ Client *vaultapi.Client }

// wrapKey is the one field of the wrapped data: the spec as JSON text, so it
// survives Vault's JSON round trip byte for byte.
const wrapKey = "jitgate_grant_spec"

// WrapGrant implements Wrapper.
func (w VaultWrapper) WrapGrant(ctx context.Context, g *spec.Grant, ttl time.Duration) (string, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return "", fmt.Errorf("launch: wrap grant %s: encode: %w", g.ID, err)
	}
	tok, err := vault.Wrap(ctx, w.Client, map[string]any{wrapKey: string(b)}, ttl)
	if err != nil {
		return "", fmt.Errorf("launch: wrap grant %s: %w", g.ID, err)
	}
	return tok, nil
}

// UnwrapGrant exchanges a wrapping token for the grant spec it wraps and
// checks that it is the spec of grantID. The token is spent whatever the
// outcome; a token someone else already unwrapped fails with
// vault.ErrWrapToken, which the caller must treat as a security event.
func UnwrapGrant(ctx context.Context, client *vaultapi.Client, token, grantID string) (*spec.Grant, error) {
	data, err := vault.Unwrap(ctx, client, token)
	if err != nil {
		return nil, fmt.Errorf("launch: unwrap grant %s: %w", grantID, err)
	}
	raw, ok := data[wrapKey].(string)
	if !ok || len(data) != 1 {
		return nil, fmt.Errorf("launch: unwrap grant %s: the wrapped data is not a jitgate grant spec", grantID)
	}
	var g spec.Grant
	if err := json.Unmarshal([]byte(raw), &g); err != nil {
		return nil, fmt.Errorf("launch: unwrap grant %s: decode: %w", grantID, err)
	}
	if g.ID != grantID {
		return nil, fmt.Errorf("launch: unwrap grant %s: the token wraps the spec of grant %q", grantID, g.ID)
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("launch: unwrap grant %s: %w", grantID, err)
	}
	return &g, nil
}
