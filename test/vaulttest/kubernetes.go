package vaulttest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The Kubernetes secrets engine part of the double: POST|PUT
// <mount>/creds/<role> with {"kubernetes_namespace": …, "ttl": …}, answered
// with the envelope Vault documents for "Generate credentials":
//
//	{"request_id":…, "lease_id":"kubernetes/creds/<role>/<id>", "renewable":false,
//	 "lease_duration":3600, "data":{"service_account_name":…,
//	 "service_account_namespace":…, "service_account_token":…},
//	 "wrap_info":null, "warnings":null, "auth":null, "mount_type":"kubernetes"}
//
// Errors as the plugin words them (400): an unknown role, a missing
// kubernetes_namespace, a namespace the role does not allow. Leases are revoked
// with sys/leases/revoke like every other lease; a revoked token is reported
// by KubeTokenRevoked so tests can check that the grant's credential ended.
// The token itself comes from KubernetesConfig.Token (normally the test API
// server's token); the double does not talk to any cluster.

// KubernetesConfig enables the Kubernetes secrets engine in the double.
type KubernetesConfig struct {
	// Mount is the engine's mount; default "kubernetes".
	Mount string
	// Roles maps a role name to the namespaces it allows ("*" for any), as a
	// role's allowed_kubernetes_namespaces.
	Roles map[string][]string
	// ServiceAccount is the service_account_name reported; default "jitgate-exec".
	ServiceAccount string
	// Token makes the service account token for one lease. Required.
	Token func(role, namespace string) (string, error)
	// TTL is the default lease_duration; default one hour. A request's ttl
	// is honoured when shorter.
	TTL time.Duration
}

func (k *KubernetesConfig) validate() error {
	k.Mount = strings.Trim(k.Mount, "/")
	if k.Mount == "" {
		k.Mount = "kubernetes"
	}
	if !validKVPath(k.Mount) {
		return fmt.Errorf("vaulttest: Kubernetes mount %q must be [A-Za-z0-9_.-] segments", k.Mount)
	}
	if len(k.Roles) == 0 {
		return fmt.Errorf("vaulttest: Kubernetes.Roles is empty")
	}
	for name := range k.Roles {
		if !rolePattern.MatchString(name) {
			return fmt.Errorf("vaulttest: Kubernetes role name %q must match %s", name, rolePattern)
		}
	}
	if k.Token == nil {
		return fmt.Errorf("vaulttest: Kubernetes.Token is required")
	}
	if k.ServiceAccount == "" {
		k.ServiceAccount = "jitgate-exec"
	}
	if k.TTL == 0 {
		k.TTL = time.Hour
	}
	if k.TTL < time.Second {
		return fmt.Errorf("vaulttest: Kubernetes.TTL must be at least one second")
	}
	return nil
}

type kubeLease struct {
	token   string
	expires time.Time
}

// kubeCreds answers <mount>/creds/<role>.
func (s *Server) kubeCreds(w http.ResponseWriter, r *http.Request, path, role string) {
	k := s.cfg.Kubernetes
	allowed, ok := k.Roles[role]
	if !ok {
		writeErrors(w, http.StatusBadRequest, fmt.Sprintf("role '%s' does not exist", role))
		return
	}
	var body struct {
		Namespace string `json:"kubernetes_namespace"`
		TTL       any    `json:"ttl"`
	}
	if err := readJSON(r, &body); err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	if body.Namespace == "" {
		writeErrors(w, http.StatusBadRequest, "'kubernetes_namespace' is required")
		return
	}
	if !slices.Contains(allowed, "*") && !slices.Contains(allowed, body.Namespace) {
		writeErrors(w, http.StatusBadRequest, fmt.Sprintf("kubernetes_namespace '%s' is not present in role's allowed_kubernetes_namespaces", body.Namespace))
		return
	}
	ttl := k.TTL
	if body.TTL != nil {
		d, err := parseVaultTTL(body.TTL)
		if err != nil {
			writeErrors(w, http.StatusBadRequest, err.Error())
			return
		}
		if d > 0 && d < ttl {
			ttl = d
		}
	}
	wrapFor, wrap, err := wrapTTL(r)
	if err != nil {
		writeErrors(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := k.Token(role, body.Namespace)
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, "1 error occurred:\n\t* "+err.Error()+"\n\n")
		return
	}
	leaseID := path + "/" + randToken(24)
	s.mu.Lock()
	s.kubeLeases[leaseID] = kubeLease{token: tok, expires: s.cfg.Now().Add(ttl)}
	s.mu.Unlock()
	resp := envelope{
		RequestID:     uuid(),
		LeaseID:       leaseID,
		Renewable:     false,
		LeaseDuration: int(ttl / time.Second),
		Data: map[string]any{
			"service_account_name":      k.ServiceAccount,
			"service_account_namespace": body.Namespace,
			"service_account_token":     tok,
		},
		MountType: "kubernetes",
	}
	if wrap {
		s.respondWrapped(w, resp, wrapFor, path)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// parseVaultTTL reads a ttl parameter: a number of seconds, or a duration
// string ("90s", "1h").
func parseVaultTTL(v any) (time.Duration, error) {
	switch t := v.(type) {
	case float64:
		return time.Duration(t) * time.Second, nil
	case string:
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, fmt.Errorf("error converting input %v for field \"ttl\": %v", t, err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("error converting input %v for field \"ttl\"", v)
}

// revokeKubeLeases drops the matching Kubernetes leases, remembering their
// tokens as revoked.
func (s *Server) revokeKubeLeases(_ context.Context, match func(string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, l := range s.kubeLeases {
		if match(id) {
			s.kubeRevoked[l.token] = true
			delete(s.kubeLeases, id)
		}
	}
}

// KubeLeases returns the ids of the Kubernetes leases not yet revoked, sorted.
func (s *Server) KubeLeases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.kubeLeases))
	for id := range s.kubeLeases {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// KubeTokenRevoked reports whether a lease that handed out token was revoked.
func (s *Server) KubeTokenRevoked(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kubeRevoked[token]
}
