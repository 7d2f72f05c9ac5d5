package policy

import (
	"strconv"

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

// portsNode is the target's ports: value, or nil.
func (l *loader) portsNode(_ *yaml.Node, f *fields) *yaml.Node { return f.vals["ports"] }
