package guard

import "fmt"

// maxSessionEntries bounds the prepared statements and cursors a Session
// remembers, so a client cannot grow the proxy's memory without bound.
const maxSessionEntries = 10000

// Session tracks one client connection's SQL-level state, so EXECUTE is
// judged by the statement PREPARE recorded and FETCH/MOVE by the query
// DECLARE recorded. EXECUTE of a name this session never saw prepared, and
// FETCH from a cursor it never saw declared, are refused (fail closed).
// State changes only when a whole string is allowed. A Session is not safe
// for concurrent use: one per client connection.
type Session struct {
	g        *Guard
	prepared map[string]*body
	cursors  map[string]*body
}

// NewSession starts the state of one client connection.
func (g *Guard) NewSession() *Session {
	return &Session{g: g, prepared: map[string]*body{}, cursors: map[string]*body{}}
}

// Check judges sql like Guard.Check, with this connection's state, and
// records its PREPARE/DECLARE/DEALLOCATE/CLOSE/DISCARD effects when allowed.
func (s *Session) Check(sql string) Verdict {
	e := s.g.lookup(sql)
	if e.err != nil || !e.session {
		return e.verdict
	}
	p := &pending{s: s, prepared: map[string]*body{}, cursors: map[string]*body{}}
	v := s.g.judge(e.stmts, p)
	if v.Allowed {
		p.commit()
	}
	return v
}

// pending is a Session's state while one string is judged; it reaches the
// Session only if the whole string is allowed.
type pending struct {
	s                        *Session
	prepared, cursors        map[string]*body // nil value: removed
	clearPrepared, clearCurs bool
}

func (p *pending) get(name string, overlay, base map[string]*body, cleared bool) *body {
	if b, ok := overlay[name]; ok {
		return b
	}
	if cleared {
		return nil
	}
	return base[name]
}

// resolve judges one statement with the session's bodies.
func (p *pending) resolve(st *analysed) ([]finding, []string, []string, Statement) {
	if !st.hasExec && !st.hasFetch && st.eff != effPrepare && st.eff != effDeclare {
		return st.findings, st.kinds, st.unsafe, st.stmt
	}
	fs := append([]finding(nil), st.findings...)
	kinds := append([]string(nil), st.kinds...)
	unsafe := append([]string(nil), st.unsafe...)
	if st.hasExec {
		if b := p.get(st.execName, p.prepared, p.s.prepared, p.clearPrepared); b != nil {
			fs = append(fs, b.findings...)
			kinds = append(kinds, b.kinds...)
			unsafe = append(unsafe, b.unsafe...)
		} else {
			fs = append(fs, finding{class: ClassForbidden,
				reason: fmt.Sprintf("EXECUTE %s: no statement of that name was prepared in this session", st.execName)})
		}
	}
	if st.hasFetch {
		if b := p.get(st.fetchName, p.cursors, p.s.cursors, p.clearCurs); b != nil {
			fs = append(fs, b.findings...)
			kinds = append(kinds, b.kinds...)
			unsafe = append(unsafe, b.unsafe...)
		} else {
			fs = append(fs, finding{class: ClassForbidden,
				reason: fmt.Sprintf("cursor %s was not declared in this session", st.fetchName)})
		}
	}
	if st.eff == effPrepare || st.eff == effDeclare {
		n := len(p.s.prepared) + len(p.prepared)
		if st.eff == effDeclare {
			n = len(p.s.cursors) + len(p.cursors)
		}
		if n >= maxSessionEntries {
			fs = append(fs, finding{class: ClassForbidden,
				reason: fmt.Sprintf("the session already holds %d prepared statements or cursors", n)})
		}
	}
	stmt := st.stmt
	stmt.Class, stmt.Reasons = summarise(fs, unsafe)
	stmt.UnsafeWrite = len(unsafe) > 0
	return fs, dedupe(kinds), dedupe(unsafe), stmt
}

// apply records an allowed statement's effect.
func (p *pending) apply(st *analysed) {
	switch st.eff {
	case effPrepare:
		p.prepared[st.name] = st.body
	case effDeclare:
		p.cursors[st.name] = st.body
	case effDeallocate:
		if st.all {
			p.clearPrepared, p.prepared = true, map[string]*body{}
		} else {
			p.prepared[st.name] = nil
		}
	case effClose:
		if st.all {
			p.clearCurs, p.cursors = true, map[string]*body{}
		} else {
			p.cursors[st.name] = nil
		}
	case effDiscardAll:
		p.clearPrepared, p.prepared = true, map[string]*body{}
		p.clearCurs, p.cursors = true, map[string]*body{}
	}
}

func (p *pending) commit() {
	merge := func(base map[string]*body, overlay map[string]*body, cleared bool) map[string]*body {
		if cleared {
			base = map[string]*body{}
		}
		for k, v := range overlay {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		return base
	}
	p.s.prepared = merge(p.s.prepared, p.prepared, p.clearPrepared)
	p.s.cursors = merge(p.s.cursors, p.cursors, p.clearCurs)
}
