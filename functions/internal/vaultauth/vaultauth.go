// Package vaultauth logs the functions and the session task in to Vault with
// Vault's AWS auth method, IAM flavour: the caller signs an
// sts:GetCallerIdentity request with its own role's credentials (the Lambda
// function's or the ECS task's) and hands the signed request to Vault, which
// replays it to STS to learn who is calling and maps that role to a Vault
// role. No standing Vault token has to be stored in the function's
// configuration.
//
//	secret, err := vaultauth.Login(ctx, vaultClient, awsCfg.Credentials, vaultauth.Config{Role: "jitgate-api"})
//	// vaultClient now carries the client token; secret.Auth has its lease.
//
// Vault side (once): vault auth enable aws; vault write auth/aws/config/client
// iam_server_id_header_value=<ServerID>; vault write auth/aws/role/jitgate-api
// auth_type=iam bound_iam_principal_arn=<the function's role ARN> policies=….
package vaultauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	vaultapi "github.com/hashicorp/vault/api"
)

// The request Vault replays to STS.
const (
	stsBody = "Action=GetCallerIdentity&Version=2011-06-15"
	// DefaultSTSURL is the global STS endpoint Vault uses by default.
	DefaultSTSURL = "https://sts.amazonaws.com/"
	// ServerIDHeader binds the signed request to one Vault cluster, so a
	// signed login for Vault A cannot be replayed against Vault B.
	ServerIDHeader = "X-Vault-AWS-IAM-Server-ID"
)

// Config configures a login.
type Config struct {
	// Mount is the AWS auth method's mount; default "aws".
	Mount string
	// Role is the Vault role to log in as. Required.
	Role string
	// ServerID is the value of X-Vault-AWS-IAM-Server-ID that Vault's
	// auth/aws/config/client requires (iam_server_id_header_value). Set it:
	// without it a login signed for this Vault is valid for any Vault.
	ServerID string
	// STSURL and Region select the STS endpoint the request is signed for;
	// defaults DefaultSTSURL and us-east-1 (Vault's defaults). A regional
	// endpoint needs sts_endpoint and sts_region on Vault's side too.
	STSURL string
	Region string
	// Now is the signing clock; default time.Now.
	Now func() time.Time
}

// LoginData builds the auth/<mount>/login body: the signed
// sts:GetCallerIdentity request, base64-encoded as Vault expects.
func LoginData(ctx context.Context, creds aws.CredentialsProvider, cfg Config) (map[string]any, error) {
	if cfg.Role == "" {
		return nil, errors.New("vaultauth: Role is required")
	}
	if creds == nil {
		return nil, errors.New("vaultauth: no AWS credentials")
	}
	if cfg.STSURL == "" {
		cfg.STSURL = DefaultSTSURL
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("vaultauth: AWS credentials: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.STSURL, strings.NewReader(stsBody))
	if err != nil {
		return nil, fmt.Errorf("vaultauth: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if cfg.ServerID != "" {
		req.Header.Set(ServerIDHeader, cfg.ServerID)
	}
	sum := sha256.Sum256([]byte(stsBody))
	if err := v4.NewSigner().SignHTTP(ctx, c, req, hex.EncodeToString(sum[:]), "sts", cfg.Region, cfg.Now()); err != nil {
		return nil, fmt.Errorf("vaultauth: sign: %w", err)
	}
	hdr := map[string][]string{}
	for k, v := range req.Header {
		hdr[k] = v
	}
	hdrJSON, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("vaultauth: %w", err)
	}
	return map[string]any{
		"role":                    cfg.Role,
		"iam_http_request_method": http.MethodPost,
		"iam_request_url":         base64.StdEncoding.EncodeToString([]byte(cfg.STSURL)),
		"iam_request_body":        base64.StdEncoding.EncodeToString([]byte(stsBody)),
		"iam_request_headers":     base64.StdEncoding.EncodeToString(hdrJSON),
	}, nil
}

// Login logs client in with the AWS IAM auth method and sets the token it
// gets on client.
func Login(ctx context.Context, client *vaultapi.Client, creds aws.CredentialsProvider, cfg Config) (*vaultapi.Secret, error) {
	if client == nil {
		return nil, errors.New("vaultauth: nil Vault client")
	}
	if cfg.Mount == "" {
		cfg.Mount = "aws"
	}
	data, err := LoginData(ctx, creds, cfg)
	if err != nil {
		return nil, err
	}
	// Log in without whatever token the client holds.
	c, err := client.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("vaultauth: %w", err)
	}
	c.ClearToken()
	secret, err := c.Logical().WriteWithContext(ctx, "auth/"+strings.Trim(cfg.Mount, "/")+"/login", data)
	if err != nil {
		return nil, fmt.Errorf("vaultauth: login as %s: %w", cfg.Role, err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vaultauth: login as %s: Vault answered without a client token", cfg.Role)
	}
	client.SetToken(secret.Auth.ClientToken)
	return secret, nil
}

// ParseHeaders decodes iam_request_headers (for tests and diagnostics).
func ParseHeaders(b64 string) (http.Header, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	var h map[string][]string
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&h); err != nil {
		return nil, err
	}
	return http.Header(h), nil
}
