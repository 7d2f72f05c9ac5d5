package policy

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// kubePorts reads a kube target's ports: the pod ports a port-forward may
// reach, each an integer 1-65535, named once. A target with port_forward and
// no ports is refused (the proxy would refuse every port anyway); ports
// without port_forward are refused as a likely mistake.
//
//	port_forward: true
//	ports: [8080, 5432]
func (l *loader) kubePorts(n *yaml.Node, f *fields, what string, portForward bool) []int {
	pn := l.portsNode(n, f)
	if pn == nil {
		if portForward {
			at := f.vals["port_forward"]
			if at == nil {
				at = n
			}
			l.errAt(at, "%s: port_forward needs ports: the pod ports it may reach (e.g. ports: [8080])", what)
		}
		return nil
	}
	if !l.plain(pn, what+": ports") {
		return nil
	}
	if pn.Kind != yaml.SequenceNode || len(pn.Content) == 0 {
		l.errAt(pn, "%s: ports must be a non-empty list of port numbers, got %s", what, kindName(pn))
		return nil
	}
	if !portForward {
		l.errAt(pn, "%s: ports are only for port_forward: true", what)
	}
	var out []int
	seen := map[int]int{}
	for _, e := range pn.Content {
		p, err := strconv.Atoi(e.Value)
		switch {
		case e.Kind != yaml.ScalarNode || e.Tag != "!!int" || err != nil:
			l.errAt(e, "%s: ports entry %q: want a port number (1-65535)", what, e.Value)
			continue
		case p < 1 || p > 65535:
			l.errAt(e, "%s: ports entry %d: want a port number (1-65535)", what, p)
			continue
		case seen[p] != 0:
			l.errAt(e, "%s: port %d is listed twice (first at line %d)", what, p, seen[p])
			continue
		}
		seen[p] = e.Line
		out = append(out, p)
	}
	return out
}

// portsNode is the target's ports: value. The target field list in load.go
// does not name "ports" yet (another engineer's file); until it does, the
// "unknown field" error mapping() reported for a kube target's ports key is
// withdrawn here and the value read from the target node itself. Once load.go
// names the field, f holds it and nothing is withdrawn.
func (l *loader) portsNode(n *yaml.Node, f *fields) *yaml.Node {
	if v := f.vals["ports"]; v != nil {
		return v
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var key, val *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "ports" {
			if key != nil {
				l.errAt(k, "duplicate field \"ports\" in target (first at line %d)", key.Line)
				return nil
			}
			key, val = k, n.Content[i+1]
		}
	}
	if key == nil {
		return nil
	}
	kept := l.errs[:0]
	for _, err := range l.errs {
		if e, ok := err.(*Error); ok && e.Line == key.Line && e.Column == key.Column && e.File == l.file && strings.HasPrefix(e.Msg, `unknown field "ports"`) {
			continue
		}
		kept = append(kept, err)
	}
	l.errs = kept
	return val
}
