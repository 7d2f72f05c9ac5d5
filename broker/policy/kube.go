package policy

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// KubeTarget is the Kubernetes part of a kube target: how the proxy reaches the
// API server and what a grant may touch there.
//
//	targets:
//	  - name: shop-k8s
//	    kind: kube
//	    address: k8s.internal:6443
//	    ca: file:k8s-ca.pem          # or the PEM inline; relative to the policy file
//	    server_name: kubernetes      # optional: the name in the API server's certificate
//	    namespace: shop              # required: the one namespace grants cover
//	    pods: ["web-*"]              # optional globs; empty means any pod
//	    containers: [app]            # optional globs; empty means any container
//	    exec: true                   # kubectl exec (commands checked as for ssh)
//	    attach: false                # kubectl attach
//	    port_forward: false          # kubectl port-forward
//	    ports: [8080]                # the pod ports port_forward may reach (required with it)
//	    copy_files: false            # kubectl cp (exec of tar)
//	    commands: {allow: [ls, cat, env, ps], deny: [curl]}
//	    credentials: {source: local, token: env:SHOP_K8S_TOKEN}
//	    # or: {source: vault, vault_mount: kubernetes, vault_roles: {read: shop-exec}}
type KubeTarget struct {
	// CA is the PEM bundle the API server's certificate must chain to, read
	// at load time (inline, or from the file a "file:PATH" reference names).
	// Empty means the system roots; TLS is never skipped.
	CA string
	// CARef is the ca value as written in the policy ("file:..." or inline).
	CARef string
	// ServerName overrides the TLS server name checked upstream.
	ServerName string
	// Scope is the namespace, pod and container globs and the switches.
	Scope spec.KubeScope

	caLine, caCol int
}

var (
	// dns1123Label is a Kubernetes namespace name.
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// kubeGlob is a pod or container name glob: DNS-1123 characters and *?[].
	kubeGlob = regexp.MustCompile(`^[a-z0-9.*?\[\]-]{1,253}$`)
)

// kubeKeys are the target keys only kube targets take.
var kubeKeys = []string{"ca", "server_name", "namespace", "pods", "containers", "exec", "attach", "port_forward", "ports", "copy_files"}

// kubeTarget reads the kube-only keys of a target (and refuses them on other
// kinds). n is the target's node, f its fields.
func (l *loader) kubeTarget(n *yaml.Node, f *fields, what string, t *Target) {
	if t.Protocol != spec.Kube {
		for _, k := range kubeKeys {
			if f.has(k) {
				l.errAt(f.vals[k], "%s: %s is only for kube targets", what, k)
			}
		}
		return
	}
	k := &t.Kube
	if ns, ok := l.required(f, "namespace", what); ok && ns != "" {
		if !dns1123Label.MatchString(ns) {
			l.errAt(f.vals["namespace"], "%s: namespace %q: want a Kubernetes namespace name (lowercase letters, digits and -, at most 63)", what, ns)
		}
		k.Scope.Namespace = ns
	}
	for _, key := range []string{"pods", "containers"} {
		globs, _ := l.strList(f, key, what)
		for i, g := range globs {
			if _, err := path.Match(g, ""); err != nil || !kubeGlob.MatchString(g) {
				l.errAt(f.vals[key].Content[i], "%s: %s entry %q: want a name or a glob (* ? [...]) over lowercase names", what, key, g)
			}
		}
		if key == "pods" {
			k.Scope.Pods = globs
		} else {
			k.Scope.Containers = globs
		}
	}
	k.Scope.Exec, _ = l.boolean(f, "exec", what)
	k.Scope.Attach, _ = l.boolean(f, "attach", what)
	k.Scope.PortForward, _ = l.boolean(f, "port_forward", what)
	k.Scope.CopyFiles, _ = l.boolean(f, "copy_files", what)
	k.Scope.Ports = l.kubePorts(n, f, what, k.Scope.PortForward)
	k.ServerName, _ = l.str(f, "server_name", what)
	if ca, ok := l.str(f, "ca", what); ok && ca != "" {
		k.CARef = ca
		k.caLine, k.caCol = f.vals["ca"].Line, f.vals["ca"].Column
		switch {
		case strings.HasPrefix(ca, "file:"):
			// Read after parsing, by Load (see resolveKubeFiles).
		case strings.HasPrefix(ca, "env:"):
			l.errAt(f.vals["ca"], "%s: ca: want file:PATH or the PEM inline (a CA bundle is not a secret; env: is not read here)", what)
		default:
			if err := checkCABundle([]byte(ca)); err != nil {
				l.errAt(f.vals["ca"], "%s: ca: %v", what, err)
			}
			k.CA = ca
		}
	}
	if cn := f.vals["commands"]; cn != nil {
		if cf := l.mapping(cn, what+" commands", "allow", "deny"); cf != nil {
			t.Commands.Allow, _ = l.strList(cf, "allow", what+" commands")
			t.Commands.Deny, _ = l.strList(cf, "deny", what+" commands")
		}
	}
	if !f.has("credentials") {
		l.errAt(n, "%s: credentials are required for a kube target (source local with token: env:NAME or file:PATH, or source vault with vault_mount and vault_roles)", what)
	}
}

// kubeCredentials checks a kube target's credentials block.
func (l *loader) kubeCredentials(n *yaml.Node, w string, c TargetCredentials) {
	switch {
	case c.KVPath != "" || c.KVField != "":
		l.errAt(n, "%s: kv_path and kv_field are only for http targets", w)
	case c.Source == SourceLocal && c.Token == "":
		l.errAt(n, "%s: token (env:NAME or file:PATH) is required for a kube target with source local", w)
	case c.Source == SourceLocal && !strings.HasPrefix(c.Token, "env:") && !strings.HasPrefix(c.Token, "file:"):
		l.errAt(n, "%s: token must be a reference (env:NAME or file:PATH), not a literal", w)
	case c.Source == SourceVault && c.Token != "":
		l.errAt(n, "%s: token is for source local; with source vault the token comes from Vault's Kubernetes secrets engine", w)
	}
}

// checkCABundle reports whether b is one or more PEM certificates and nothing else.
func checkCABundle(b []byte) error {
	n := 0
	for rest := b; len(strings.TrimSpace(string(rest))) > 0; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if n == 0 {
				return fmt.Errorf("not a PEM certificate bundle")
			}
			return fmt.Errorf("text after certificate %d is not PEM", n)
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n+1, blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no certificate in the bundle")
	}
	return nil
}

// fileReader reads a file a policy refers to (Load passes os.ReadFile).
type fileReader func(name string) ([]byte, error)

// resolveKubeFiles reads the CA bundles kube targets name with file:PATH
// (relative paths are relative to dir, the policy file's directory). With no
// reader (Parse of a policy held in memory) such references are refused: the
// proxy never falls back to the system roots for a CA the policy names.
func (l *loader) resolveKubeFiles(p *Policy, dir string, read fileReader) {
	if p == nil {
		return
	}
	for i := range p.Targets {
		k := &p.Targets[i].Kube
		ref, ok := strings.CutPrefix(k.CARef, "file:")
		if p.Targets[i].Protocol != spec.Kube || !ok {
			continue
		}
		what := fmt.Sprintf("target %q", p.Targets[i].Name)
		if read == nil {
			l.errAtPos(k.caLine, k.caCol, "%s: ca %s: this policy was parsed without file access; give the PEM inline", what, k.CARef)
			continue
		}
		name := ref
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		b, err := read(name)
		if err != nil {
			l.errAtPos(k.caLine, k.caCol, "%s: ca: %v", what, err)
			continue
		}
		if err := checkCABundle(b); err != nil {
			l.errAtPos(k.caLine, k.caCol, "%s: ca %s: %v", what, name, err)
			continue
		}
		k.CA = string(b)
	}
}

// kubeRuleCheck reports a rule granting access on a vault-backed kube target
// that has no Vault role for that level.
func (l *loader) kubeRuleCheck(at *yaml.Node, what string, r *Rule, t *Target) {
	if t.Protocol != spec.Kube || t.Credentials.Source != SourceVault || t.Credentials.Role(r.Access) != "" {
		return
	}
	l.errAt(at, "%s: grants %s on target %q, which has no vault_roles.%s", what, r.Access, t.Name, r.Access)
}

// MatchKubeScope reports whether a pod and container are inside scope, with the
// reason when they are not. An empty container is refused when the scope limits
// containers, since the pod's default container is not known to the broker.
func MatchKubeScope(s spec.KubeScope, pod, container string) (bool, string) {
	if pod == "" {
		return false, "no pod named"
	}
	if len(s.Pods) > 0 && !slices.ContainsFunc(s.Pods, func(g string) bool { ok, _ := path.Match(g, pod); return ok }) {
		return false, fmt.Sprintf("pod %q is not covered by the target's pods %v", pod, s.Pods)
	}
	if len(s.Containers) > 0 {
		if container == "" {
			return false, fmt.Sprintf("name the container: the target limits containers to %v", s.Containers)
		}
		if !slices.ContainsFunc(s.Containers, func(g string) bool { ok, _ := path.Match(g, container); return ok }) {
			return false, fmt.Sprintf("container %q is not covered by the target's containers %v", container, s.Containers)
		}
	}
	return true, ""
}

// scope returns a copy of the scope for a grant.
func (k *KubeTarget) scope() spec.KubeScope {
	s := k.Scope
	s.Pods, s.Containers = slices.Clone(s.Pods), slices.Clone(s.Containers)
	s.Ports = slices.Clone(s.Ports)
	return s
}

// specCommands is the command policy a grant carries. A kube target without
// copy_files denies tar wherever it appears (kubectl cp is an exec of tar), so
// the broker and the proxy refuse it inside sh -c strings as well.
func (t *Target) specCommands() spec.Commands {
	c := t.Commands
	c.Allow, c.Deny = slices.Clone(c.Allow), slices.Clone(c.Deny)
	if t.Protocol == spec.Kube && !t.Kube.Scope.CopyFiles && !slices.Contains(c.Deny, "tar") {
		c.Deny = append(c.Deny, "tar")
	}
	return c
}
