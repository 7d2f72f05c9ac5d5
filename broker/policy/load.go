package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Load reads the policy file at path and parses it.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", path, err)
	}
	return parse(path, data, filepath.Dir(path), os.ReadFile)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse parses and validates a policy. name is used in error positions. The
// error, if any, joins one *Error per problem found, each printed as
// "name:line:column: message".
//
// Parse reads no files: a kube target's "ca: file:PATH" is refused (give the
// PEM inline, or use Load).
func Parse(name string, data []byte) (*Policy, error) {
	return parse(name, data, "", nil)
}

func parse(name string, data []byte, dir string, read fileReader) (*Policy, error) {
	if len(data) > MaxFileBytes {
		return nil, &Error{File: name, Line: 1, Column: 1, Msg: fmt.Sprintf("policy file larger than %d bytes", MaxFileBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Line: 1, Column: 1, Msg: "empty policy (want at least version: 1)"}
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Msg: "more than one YAML document in a policy file"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{File: name, Line: 1, Column: 1, Msg: "empty policy (want at least version: 1)"}
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	l := &loader{file: name, lines: strings.Split(string(data), "\n")}
	p := l.policy(doc.Content[0], env)
	l.resolveKubeFiles(p, dir, read)
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	p.Source = name
	return p, nil
}

func yamlError(name string, err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Column: 1, Msg: "YAML syntax: " + m[2]}
	}
	return &Error{File: name, Line: 1, Column: 1, Msg: "YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

func (l *loader) policy(n *yaml.Node, env *cel.Env) *Policy {
	f := l.mapping(n, "policy", "version", "issuers", "targets", "rules", "notifications")
	if f == nil {
		return nil
	}
	p := &Policy{}
	if !f.has("version") {
		l.errAt(n, "version is required (version: 1)")
	} else if v, ok := l.integer(f, "version", "policy"); ok {
		if v != 1 {
			l.errAt(f.vals["version"], "unsupported policy version %d (want 1)", v)
		}
		p.Version = v
	}

	issuerAt := map[string]int{}
	for _, in := range l.seq(f.vals["issuers"], "issuers") {
		is, ok := l.issuer(in)
		if !ok {
			continue
		}
		if line, dup := issuerAt[is.Name]; dup {
			l.errAt(in, "duplicate issuer name %q (first at line %d)", is.Name, line)
			continue
		}
		for _, prev := range p.Issuers {
			if prev.Issuer == is.Issuer {
				l.errAt(in, "issuer %q: URL %q is also used by issuer %q", is.Name, is.Issuer, prev.Name)
			}
		}
		issuerAt[is.Name] = in.Line
		p.Issuers = append(p.Issuers, is)
	}

	targetAt := map[string]int{}
	for _, tn := range l.seq(f.vals["targets"], "targets") {
		// A target with errors is still registered by name, so rules naming
		// it do not add "unknown target" to the real error.
		t, named := l.target(tn)
		if !named {
			continue
		}
		if line, dup := targetAt[t.Name]; dup {
			l.errAt(tn, "duplicate target name %q (first at line %d)", t.Name, line)
			continue
		}
		targetAt[t.Name] = tn.Line
		p.Targets = append(p.Targets, t)
	}

	for _, nn := range l.seq(f.vals["notifications"], "notifications") {
		if nt, ok := l.notification(nn); ok {
			p.Notifications = append(p.Notifications, nt)
		}
	}

	ruleAt := map[string]int{}
	for _, rn := range l.seq(f.vals["rules"], "rules") {
		r, ok := l.rule(rn, p, issuerAt, env)
		if !ok {
			continue
		}
		if line, dup := ruleAt[r.Name]; dup {
			l.errAt(rn, "duplicate rule name %q (first at line %d)", r.Name, line)
			continue
		}
		ruleAt[r.Name] = rn.Line
		p.Rules = append(p.Rules, r)
	}
	return p
}

func (l *loader) notification(n *yaml.Node) (Notification, bool) {
	f := l.mapping(n, "notification", "kind", "url", "secret", "approve_url")
	if f == nil {
		return Notification{}, false
	}
	before := len(l.errs)
	var nt Notification
	nt.Kind, _ = l.required(f, "kind", "notification")
	nt.URL, _ = l.required(f, "url", "notification")
	nt.Secret, _ = l.str(f, "secret", "notification")
	nt.ApproveURL, _ = l.str(f, "approve_url", "notification")
	switch nt.Kind {
	case "slack", "":
	case "webhook":
		if nt.Secret == "" {
			l.errAt(n, "notification: a webhook needs a secret (env:NAME or file:PATH) to sign its bodies")
		}
	default:
		l.errAt(f.vals["kind"], "notification: kind %q is not slack or webhook", nt.Kind)
	}
	if nt.Secret != "" && !strings.HasPrefix(nt.Secret, "env:") && !strings.HasPrefix(nt.Secret, "file:") {
		l.errAt(f.vals["secret"], "notification: secret must be a reference (env:NAME or file:PATH), not a literal in the policy file")
	}
	return nt, len(l.errs) == before
}

func (l *loader) issuer(n *yaml.Node) (Issuer, bool) {
	f := l.mapping(n, "issuer", "name", "issuer", "audience", "groups_claim", "algorithms",
		"clock_skew", "authorized_party", "human_when", "dev")
	if f == nil {
		return Issuer{}, false
	}
	name, ok := l.name(f, "issuer")
	if !ok {
		return Issuer{}, false
	}
	what := fmt.Sprintf("issuer %q", name)
	before := len(l.errs)
	is := Issuer{Name: name}
	is.Issuer, _ = l.required(f, "issuer", what)
	is.Audience, _ = l.required(f, "audience", what)
	is.GroupsClaim, _ = l.str(f, "groups_claim", what)
	is.AuthorizedParty, _ = l.str(f, "authorized_party", what)
	is.HumanWhen, _ = l.str(f, "human_when", what)
	is.Dev, _ = l.boolean(f, "dev", what)
	is.Algorithms, _ = l.strList(f, "algorithms", what)
	if an := f.vals["algorithms"]; an != nil && an.Kind == yaml.SequenceNode {
		for _, e := range an.Content {
			if err := identity.CheckAlgorithm(e.Value); err != nil {
				l.errAt(e, "%s: %v", what, err)
			}
		}
	}
	if d, ok := l.duration(f, "clock_skew", what); ok && d > identity.MaxClockSkew {
		l.errAt(f.vals["clock_skew"], "%s: clock_skew %s exceeds the maximum %s", what, d, identity.MaxClockSkew)
	} else {
		is.ClockSkew = d
	}
	if len(l.errs) > before {
		return Issuer{}, false
	}
	cfg := identity.IssuerConfig{
		Name: is.Name, Issuer: is.Issuer, Audience: is.Audience, GroupsClaim: is.GroupsClaim,
		Algorithms: is.Algorithms, ClockSkew: is.ClockSkew, AuthorizedParty: is.AuthorizedParty,
		HumanWhen: is.HumanWhen, DevOnly: is.Dev,
	}
	if err := cfg.Validate(); err != nil {
		at := n
		msg := strings.TrimPrefix(err.Error(), "identity: ")
		if rest, ok := strings.CutPrefix(msg, "issuer "+name+": "); ok {
			msg = what + ": " + rest
		}
		switch {
		case strings.Contains(msg, "issuer URL"):
			at = f.vals["issuer"]
		case strings.Contains(msg, "human_when"):
			at = f.vals["human_when"]
		case strings.HasPrefix(msg, "issuer name"):
			at = f.vals["name"]
		}
		l.errAt(at, "%s", msg)
		return Issuer{}, false
	}
	return is, true
}

var (
	detectorRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	columnRE   = regexp.MustCompile(`^(\*|[A-Za-z_][A-Za-z0-9_$]*)(\.(\*|[A-Za-z_][A-Za-z0-9_$]*)){0,2}$`)
)

// target reads one target; it reports whether the target has a valid name
// (its other errors are in l.errs).
func (l *loader) target(n *yaml.Node) (Target, bool) {
	f := l.mapping(n, "target", "name", "description", "kind", "address", "database",
		"credentials", "masking", "guard", "user", "known_hosts", "commands", "http",
		"ca", "server_name", "namespace", "pods", "containers", "exec", "attach", "port_forward", "ports", "copy_files",
		"keys", "reveal")
	if f == nil {
		return Target{}, false
	}
	name, ok := l.name(f, "target")
	if !ok {
		return Target{}, false
	}
	what := fmt.Sprintf("target %q", name)
	t := Target{Name: name}
	t.Description, _ = l.str(f, "description", what)
	if kind, ok := l.required(f, "kind", what); ok {
		p, err := spec.ParseProtocol(kind)
		if err != nil {
			l.errAt(f.vals["kind"], "%s: unknown kind %q (want postgres, ssh, http, kube or config)", what, kind)
		}
		t.Kind, t.Protocol = kind, p
	}
	if t.Protocol == spec.Config && !f.has("address") {
		// The store is the target: no address (configTarget names it).
	} else if addr, ok := l.required(f, "address", what); ok {
		host, port, err := net.SplitHostPort(addr)
		pn, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || pn < 1 || pn > 65535 {
			l.errAt(f.vals["address"], "%s: address %q: want host:port", what, addr)
		}
		t.Address = addr
	}
	if t.Protocol == spec.Postgres {
		// An empty database name has bypassed other gateways' rules: require it.
		t.Database, _ = l.required(f, "database", what)
	} else {
		t.Database, _ = l.str(f, "database", what)
	}

	if cn := f.vals["credentials"]; cn != nil {
		t.Credentials = l.credentials(cn, what, t.Protocol)
	} else if t.Protocol == spec.Postgres {
		l.errAt(n, "%s: credentials are required for a postgres target", what)
	}

	if mn := f.vals["masking"]; mn != nil {
		if mf := l.mapping(mn, what+" masking", "columns", "detectors", "style", "json_fields"); mf != nil {
			t.Masking.JSONFields, _ = l.strList(mf, "json_fields", what+" masking")
			t.Masking.Columns, _ = l.strList(mf, "columns", what+" masking")
			for i, c := range t.Masking.Columns {
				if !columnRE.MatchString(c) {
					l.errAt(mf.vals["columns"].Content[i], "%s: masking column %q: want [schema.][table.]column, '*' matching one part", what, c)
				}
			}
			t.Masking.Detectors, _ = l.strList(mf, "detectors", what+" masking")
			for i, d := range t.Masking.Detectors {
				if !detectorRE.MatchString(d) {
					l.errAt(mf.vals["detectors"].Content[i], "%s: masking detector %q: want a lowercase name like credit_card", what, d)
				}
			}
			t.Masking.Style, _ = l.str(mf, "style", what+" masking")
			switch t.Masking.Style {
			case "", "full", "partial", "token":
			default:
				l.errAt(mf.vals["style"], "%s: masking style %q: want full, partial or token", what, t.Masking.Style)
			}
		}
	}
	if t.Protocol == spec.SSH {
		t.User, _ = l.required(f, "user", what)
		t.KnownHosts, _ = l.strList(f, "known_hosts", what)
		if len(t.KnownHosts) == 0 {
			l.errAt(n, "%s: known_hosts is required for an ssh target (the proxy never skips host key checks)", what)
		}
		if cn := f.vals["commands"]; cn != nil {
			if cf := l.mapping(cn, what+" commands", "allow", "deny", "interactive", "file_transfer", "port_forwarding"); cf != nil {
				t.Commands.Allow, _ = l.strList(cf, "allow", what+" commands")
				t.Commands.Deny, _ = l.strList(cf, "deny", what+" commands")
				t.Commands.Interactive, _ = l.boolean(cf, "interactive", what+" commands")
				t.Commands.FileTransfer, _ = l.boolean(cf, "file_transfer", what+" commands")
				t.Commands.PortForwarding, _ = l.boolean(cf, "port_forwarding", what+" commands")
			}
		}
	} else {
		for _, k := range []string{"user", "known_hosts", "commands"} {
			if f.has(k) && !(k == "commands" && t.Protocol == spec.Kube) {
				l.errAt(f.vals[k], "%s: %s is only for ssh targets", what, k)
			}
		}
	}
	l.kubeTarget(n, f, what, &t)
	l.configTarget(n, f, what, &t)
	if hn := f.vals["http"]; hn != nil {
		if t.Protocol != spec.HTTP {
			l.errAt(hn, "%s: http is only for http targets", what)
		} else if hf := l.mapping(hn, what+" http", "rules"); hf != nil {
			for _, rn := range l.seq(hf.vals["rules"], what+" http rules") {
				rf := l.mapping(rn, what+" http rule", "methods", "path", "effect")
				if rf == nil {
					continue
				}
				var r spec.HTTPRule
				r.Methods, _ = l.strList(rf, "methods", what+" http rule")
				r.Path, _ = l.required(rf, "path", what+" http rule")
				r.Effect, _ = l.str(rf, "effect", what+" http rule")
				if r.Effect != "" && r.Effect != "allow" && r.Effect != "deny" {
					l.errAt(rf.vals["effect"], "%s: http rule effect %q: want allow or deny", what, r.Effect)
				}
				t.HTTPRules = append(t.HTTPRules, r)
			}
		}
	}
	if gn := f.vals["guard"]; gn != nil {
		if gf := l.mapping(gn, what+" guard", "deny_functions", "allow_functions", "deny_kinds", "allow_kinds"); gf != nil {
			t.Guard.DenyFunctions, _ = l.strList(gf, "deny_functions", what+" guard")
			t.Guard.AllowFunctions, _ = l.strList(gf, "allow_functions", what+" guard")
			t.Guard.DenyKinds, _ = l.strList(gf, "deny_kinds", what+" guard")
			t.Guard.AllowKinds, _ = l.strList(gf, "allow_kinds", what+" guard")
		}
	}
	return t, true
}

func (l *loader) credentials(n *yaml.Node, what string, proto spec.Protocol) TargetCredentials {
	var c TargetCredentials
	w := what + " credentials"
	f := l.mapping(n, w, "source", "admin_dsn", "read_role", "write_role", "admin_role", "vault_mount", "vault_roles", "ca_key", "token", "kv_path", "kv_field", "store")
	if f == nil {
		return c
	}
	src, ok := l.required(f, "source", w)
	if ok {
		switch src {
		case "local":
			c.Source = SourceLocal
		case "vault":
			c.Source = SourceVault
		default:
			l.errAt(f.vals["source"], "%s: source %q: want local or vault", w, src)
		}
	}
	c.AdminDSN, _ = l.str(f, "admin_dsn", w)
	c.ReadRole, _ = l.str(f, "read_role", w)
	c.WriteRole, _ = l.str(f, "write_role", w)
	c.AdminRole, _ = l.str(f, "admin_role", w)
	c.VaultMount, _ = l.str(f, "vault_mount", w)
	c.CAKey, _ = l.str(f, "ca_key", w)
	c.Token, _ = l.str(f, "token", w)
	c.KVPath, _ = l.str(f, "kv_path", w)
	c.KVField, _ = l.str(f, "kv_field", w)
	c.Store, _ = l.str(f, "store", w)
	if c.Store != "" && proto != spec.Config {
		l.errAt(f.vals["store"], "%s: store is only for config targets", w)
	}
	if proto == spec.Config {
		l.configCredentials(n, w, c)
	} else if proto == spec.Kube {
		l.kubeCredentials(n, w, c)
	} else if proto != spec.HTTP && (c.Token != "" || c.KVPath != "" || c.KVField != "") {
		l.errAt(n, "%s: token, kv_path and kv_field are only for http targets", w)
	}
	if proto == spec.HTTP {
		switch {
		case c.Source == SourceLocal && c.Token == "":
			l.errAt(n, "%s: token (env:NAME or file:PATH) is required for an http target with source local", w)
		case c.Source == SourceLocal && !strings.HasPrefix(c.Token, "env:") && !strings.HasPrefix(c.Token, "file:"):
			l.errAt(f.vals["token"], "%s: token must be a reference (env:NAME or file:PATH), not a literal", w)
		case c.Source == SourceVault && (c.KVPath == "" || c.KVField == ""):
			l.errAt(n, "%s: kv_path and kv_field are required for an http target with source vault", w)
		}
	}
	if c.CAKey != "" && proto != spec.SSH {
		l.errAt(f.vals["ca_key"], "%s: ca_key is only for ssh targets", w)
	}
	if proto == spec.SSH && c.Source == SourceLocal && c.CAKey == "" {
		l.errAt(n, "%s: ca_key (file:PATH or env:NAME) is required for an ssh target with source local", w)
	}
	if vn := f.vals["vault_roles"]; vn != nil {
		if vf := l.mapping(vn, w+" vault_roles", "read", "write", "admin"); vf != nil {
			c.VaultRoles = map[string]string{}
			for _, a := range []string{"read", "write", "admin"} {
				if s, ok := l.str(vf, a, w+" vault_roles"); ok && s != "" {
					c.VaultRoles[a] = s
				}
			}
		}
	}
	switch c.Source {
	case SourceLocal:
		if proto == spec.Postgres && c.AdminDSN == "" {
			l.errAt(n, "%s: admin_dsn is required for source local (env:NAME, file:PATH or a DSN)", w)
		}
		if c.VaultMount != "" || c.VaultRoles != nil {
			l.errAt(n, "%s: vault_mount and vault_roles need source vault", w)
		}
	case SourceVault:
		if c.VaultMount == "" {
			l.errAt(n, "%s: vault_mount is required for source vault", w)
		}
		if len(c.VaultRoles) == 0 && proto != spec.HTTP && proto != spec.Config {
			l.errAt(n, "%s: vault_roles is required for source vault", w)
		}
		if c.AdminDSN != "" {
			l.errAt(f.vals["admin_dsn"], "%s: admin_dsn is for source local; Vault holds the admin connection", w)
		}
	}
	return c
}

func (l *loader) rule(n *yaml.Node, p *Policy, issuers map[string]int, env *cel.Env) (Rule, bool) {
	f := l.mapping(n, "rule", "name", "description", "when", "targets", "access", "max_ttl",
		"effect", "modes", "approval")
	if f == nil {
		return Rule{}, false
	}
	name, ok := l.name(f, "rule")
	if !ok {
		return Rule{}, false
	}
	what := fmt.Sprintf("rule %q", name)
	before := len(l.errs)
	r := Rule{Name: name}
	r.Description, _ = l.str(f, "description", what)

	if eff, ok := l.str(f, "effect", what); ok {
		switch eff {
		case "", "allow":
			r.Effect = RuleAllow
		case "deny":
			r.Effect = RuleDeny
		default:
			l.errAt(f.vals["effect"], "%s: effect %q: want allow or deny", what, eff)
		}
	}

	if !f.has("targets") {
		l.errAt(n, "%s: targets is required", what)
	} else if ts, ok := l.strList(f, "targets", what); ok {
		if len(ts) == 0 {
			l.errAt(f.vals["targets"], "%s: targets must name at least one target", what)
		}
		for i, t := range ts {
			if _, known := p.Target(t); !known && t != "*" {
				l.errAt(f.vals["targets"].Content[i], "%s: unknown target %q", what, t)
			}
		}
		r.Targets = ts
	}

	if s, ok := l.str(f, "access", what); ok {
		switch {
		case s == "" && r.Effect == RuleDeny:
			r.Access = spec.Read // a deny rule applies to every request by default
		case s == "":
			l.errAt(n, "%s: access is required (read, write or admin)", what)
		case s == "read" || s == "write" || s == "admin":
			r.Access, _ = spec.ParseAccess(s)
		default:
			l.errAt(f.vals["access"], "%s: access %q: want read, write or admin", what, s)
		}
	}

	if ms, ok := l.strList(f, "modes", what); ok {
		for i, m := range ms {
			mode, err := spec.ParseMode(m)
			if err != nil {
				l.errAt(f.vals["modes"].Content[i], "%s: mode %q: want exec or session", what, m)
				continue
			}
			r.Modes = append(r.Modes, mode)
		}
	}

	ttl, ttlOK := l.duration(f, "max_ttl", what)
	switch {
	case !ttlOK:
	case r.Effect == RuleDeny && f.has("max_ttl"):
		l.errAt(f.vals["max_ttl"], "%s: max_ttl has no meaning on a deny rule", what)
	case ttl > MaxTTLLimit:
		l.errAt(f.vals["max_ttl"], "%s: max_ttl %s exceeds the limit %s", what, ttl, MaxTTLLimit)
	case ttl == 0 && r.Effect == RuleAllow:
		r.MaxTTL = DefaultMaxTTL
	default:
		r.MaxTTL = ttl
	}

	if an := f.vals["approval"]; an != nil {
		if r.Effect == RuleDeny {
			l.errAt(f.keys["approval"], "%s: approval has no meaning on a deny rule", what)
		} else {
			r.Approval = l.approval(an, what, issuers)
		}
	}

	// A rule must be able to deliver what it grants: the credential source of
	// each postgres target needs a role for the access level.
	if r.Effect == RuleAllow && r.Access != spec.AccessNone {
		for _, t := range p.Targets {
			if !r.namesTarget(t.Name) {
				continue
			}
			if t.Protocol == spec.Postgres && t.Credentials.Source != SourceUnknown && t.Credentials.Role(r.Access) == "" {
				field := r.Access.String() + "_role"
				if t.Credentials.Source == SourceVault {
					field = "vault_roles." + r.Access.String()
				}
				l.errAt(f.vals["access"], "%s: grants %s on target %q, which has no %s", what, r.Access, t.Name, field)
			}
			l.kubeRuleCheck(f.vals["access"], what, &r, &t)
		}
	}

	r.When, _ = l.required(f, "when", what)
	if wn := f.vals["when"]; wn != nil && r.When != "" {
		if len(r.When) > MaxExpressionBytes {
			l.errAt(wn, "%s: when is longer than %d bytes", what, MaxExpressionBytes)
		} else {
			cond, errs := compile(env, r.When)
			for _, e := range errs {
				line, col := l.celPos(wn, e.line, e.col)
				l.errAtPos(line, col, "%s: when: %s", what, e.msg)
			}
			r.prog = cond
		}
	}
	return r, len(l.errs) == before
}

func (l *loader) approval(n *yaml.Node, what string, issuers map[string]int) *Approval {
	w := what + " approval"
	f := l.mapping(n, w, "approvers", "quorum", "timeout", "covers_next", "explain")
	if f == nil {
		return nil
	}
	a := &Approval{Quorum: 1, Timeout: DefaultApprovalTimeout}
	if an := f.vals["approvers"]; an == nil {
		l.errAt(n, "%s: approvers is required", w)
	} else if af := l.mapping(an, w+" approvers", "groups", "users"); af != nil {
		a.Groups, _ = l.strList(af, "groups", w+" approvers")
		a.Users, _ = l.strList(af, "users", w+" approvers")
		for i, u := range a.Users {
			iss, sub, ok := strings.Cut(u, ":")
			if _, known := issuers[iss]; !ok || sub == "" || !known {
				l.errAt(af.vals["users"].Content[i], "%s: user %q: want issuer:subject with a configured issuer name", w, u)
			}
		}
		if len(a.Groups) == 0 && len(a.Users) == 0 {
			l.errAt(an, "%s: approvers must name at least one group or user", w)
		}
	}
	if f.has("quorum") {
		if q, ok := l.integer(f, "quorum", w); ok {
			switch {
			case q < 1:
				l.errAt(f.vals["quorum"], "%s: quorum must be at least 1, got %d", w, q)
			case len(a.Groups) == 0 && len(a.Users) > 0 && q > len(a.Users):
				l.errAt(f.vals["quorum"], "%s: quorum %d exceeds the %d listed users", w, q, len(a.Users))
			default:
				a.Quorum = q
			}
		}
	}
	if d, ok := l.duration(f, "timeout", w); ok && d > 0 {
		a.Timeout = d
	}
	if f.has("covers_next") {
		if c, ok := l.integer(f, "covers_next", w); ok {
			if c < 0 || c > 100 {
				l.errAt(f.vals["covers_next"], "%s: covers_next must be between 0 and 100, got %d", w, c)
			} else {
				a.CoversNext = c
			}
		}
	}
	a.Explain, _ = l.boolean(f, "explain", w)
	return a
}
