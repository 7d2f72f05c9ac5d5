package guard

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// DefaultCacheSize is the number of verdicts a Guard caches by default.
const DefaultCacheSize = 4096

// maxCachedSQL bounds the text length of a cached entry, so the cache's memory
// stays bounded (CacheSize × maxCachedSQL). Longer strings are parsed each time.
const maxCachedSQL = 64 << 10

// Config configures a Guard. It usually comes from the grant's spec.Guard.
type Config struct {
	// Access is the grant's access level. Required: AccessNone makes New fail.
	Access spec.Access
	// DenyFunctions are added to the default list of dangerous functions
	// (case-insensitive; "schema.name" matches only that schema; a trailing
	// '*' matches a prefix). A call anywhere in a statement forbids it.
	DenyFunctions []string
	// AllowFunctions are removed from the default dangerous list. A removed
	// function is then judged admin, so only admin grants can call it.
	// DenyFunctions wins over AllowFunctions.
	AllowFunctions []string
	// DenyKinds are statement kinds always refused, e.g. "TRUNCATE", "COPY".
	// An entry matches a kind equal to it or starting with it and a space
	// ("DROP" matches "DROP TABLE"), anywhere in the statement (a DELETE in
	// a WITH clause, the body of an EXECUTE).
	DenyKinds []string
	// AllowKinds are statement kinds allowed regardless of their class, for
	// any access level. Matching is exact (case-insensitive). Forbidden forms
	// need their own key: "COPY PROGRAM", "COPY FILE", "SET role",
	// "SET search_path", "RESET ALL", "CREATE EXTENSION", "ALTER SYSTEM",
	// "LOAD". AllowKinds never waives dangerous function calls (use
	// AllowFunctions) nor the unsafe-write rule (use AllowUnsafeWrites).
	// It MUST NOT be filled from anything a requester controls.
	AllowKinds []string
	// AllowUnsafeWrites allows DELETE/UPDATE without WHERE or with a WHERE
	// that does not restrict rows. Off by default.
	AllowUnsafeWrites bool
	// CacheSize is the number of verdicts cached by exact statement text;
	// 0 means DefaultCacheSize, a negative value disables the cache.
	CacheSize int
}

func (c *Config) validate() error {
	if c.Access < spec.Read || c.Access > spec.Admin {
		return fmt.Errorf("guard: config: access level %s allows nothing", c.Access)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	for _, k := range append(append([]string(nil), c.DenyKinds...), c.AllowKinds...) {
		if strings.TrimSpace(k) == "" {
			return errors.New("guard: config: empty statement kind")
		}
	}
	for _, f := range append(append([]string(nil), c.DenyFunctions...), c.AllowFunctions...) {
		if strings.TrimSpace(f) == "" {
			return errors.New("guard: config: empty function name")
		}
	}
	return nil
}

// ConfigFromSpec builds a Config from a grant's guard settings.
func ConfigFromSpec(g spec.Guard) Config {
	return Config{
		Access:         g.Access,
		DenyFunctions:  g.DenyFunctions,
		AllowFunctions: g.AllowFunctions,
		DenyKinds:      g.DenyKinds,
		AllowKinds:     g.AllowKinds,
	}
}

// Guard decides whether SQL strings may run under one grant. It is safe for
// concurrent use; the broker and the proxy use the same code.
type Guard struct {
	access      spec.Access
	rules       *funcRules
	denyKinds   []string
	allowKinds  map[string]bool
	allowUnsafe bool
	cache       *lru.Cache[string, *entry] // nil when disabled
	shapes      *lru.Cache[string, *shapeEntry]

	parses atomic.Int64 // how many times SQL was parsed (tests read it)
}

// entry is a cached analysis of one SQL string.
type entry struct {
	stmts   []analysed
	err     error
	verdict Verdict // the stateless verdict
	session bool    // some statement needs or changes session state
}

// New validates cfg and returns a Guard.
func New(cfg Config) (*Guard, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Guard{
		access:      cfg.Access,
		rules:       newFuncRules(cfg.DenyFunctions, cfg.AllowFunctions),
		allowKinds:  map[string]bool{},
		allowUnsafe: cfg.AllowUnsafeWrites,
	}
	for _, k := range cfg.DenyKinds {
		g.denyKinds = append(g.denyKinds, normKind(k))
	}
	for _, k := range cfg.AllowKinds {
		g.allowKinds[normKind(k)] = true
	}
	if cfg.CacheSize > 0 {
		c, err := lru.New[string, *entry](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("guard: cache: %w", err)
		}
		g.cache = c
		sc, err := lru.New[string, *shapeEntry](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("guard: cache: %w", err)
		}
		g.shapes = sc
	}
	return g, nil
}

func normKind(k string) string { return strings.ToUpper(strings.Join(strings.Fields(k), " ")) }

// Verdict is the guard's decision on one SQL string.
type Verdict struct {
	Allowed bool
	// Reason names the refused statement's kind and why; empty when allowed.
	Reason string
	// Classification is what the guard saw. Shared with the cache: do not modify.
	Classification Classification
	// Shape is the statement's normalized text (constants replaced by $n)
	// when the verdict provably does not depend on its constants (see
	// shape.go), else "". Texts with the same Shape get the same verdict, and
	// their parse trees differ only in constant leaves, so callers can key
	// other constant-independent analyses (masking lineage) by it.
	Shape string
}

// Check judges sql under the guard's grant. It is concurrency-safe and caches
// verdicts by exact text. A string the guard cannot parse is refused.
// EXECUTE of a prepared statement is refused here (its body is unknown);
// use a Session for SQL-level PREPARE/EXECUTE.
func (g *Guard) Check(sql string) Verdict {
	return g.lookup(sql).verdict
}

// Classify classifies sql with the guard's function rules, through its cache.
func (g *Guard) Classify(sql string) (Classification, error) {
	e := g.lookup(sql)
	if e.err != nil {
		return Classification{}, e.err
	}
	return e.verdict.Classification, nil
}

func (g *Guard) lookup(sql string) *entry {
	if g.cache != nil {
		if e, ok := g.cache.Get(sql); ok {
			return e
		}
	}
	// The shape cache (shape.go): a text that differs from a judged one only
	// in constants the verdict provably does not read.
	norm := ""
	if g.shapes != nil && len(sql) <= maxCachedSQL && utf8Valid(sql) {
		if n, err := pg_query.Normalize(sql); err == nil && n != sql {
			norm = n
			if s, ok := g.shapes.Get(n); ok {
				return s.forText(sql, n)
			}
		}
	}
	g.parses.Add(1)
	e := &entry{}
	var tree *pg_query.ParseResult
	tree, e.stmts, e.err = analyseTree(sql, g.rules)
	switch {
	case errors.Is(e.err, ErrEmpty):
		// No statement at all (whitespace, comments, ";"): PostgreSQL runs
		// nothing and answers EmptyQueryResponse. Clients ping this way
		// (pgx sends "-- ping"), so it is allowed; Classify still reports
		// ErrEmpty, so an exec grant cannot be requested for nothing.
		e.verdict = Verdict{Allowed: true, Classification: Classification{Class: ClassRead}}
	case e.err != nil:
		e.verdict = Verdict{Reason: "cannot parse SQL: " + strings.TrimPrefix(e.err.Error(), "guard: ")}
	default:
		e.verdict = g.judge(e.stmts, nil)
		for i := range e.stmts {
			if e.stmts[i].eff != effNone || e.stmts[i].hasExec || e.stmts[i].hasFetch {
				e.session = true
			}
		}
		if !e.session && norm != "" {
			if key, prefix, suffix := shapeOf(sql, norm, tree); key != "" {
				e.verdict.Shape = key
				g.shapes.Add(key, &shapeEntry{e: e, prefix: prefix, suffix: suffix})
			}
		}
	}
	if g.cache != nil && len(sql) <= maxCachedSQL {
		g.cache.Add(sql, e)
	}
	return e
}

// judge computes the verdict of analysed statements. s is nil for a
// stateless check; otherwise EXECUTE and FETCH are judged by the session's
// bodies, and the session's pending state is updated as statements go by.
func (g *Guard) judge(stmts []analysed, s *pending) Verdict {
	v := Verdict{Allowed: true, Classification: Classification{Statements: make([]Statement, len(stmts))}}
	for i := range stmts {
		st := &stmts[i]
		fs, kinds, unsafe, stmt := st.stateless, st.kinds, st.unsafe, st.stmt
		if s != nil {
			fs, kinds, unsafe, stmt = s.resolve(st)
		}
		v.Classification.Statements[i] = stmt
		v.Classification.Class = max(v.Classification.Class, stmt.Class)
		if s != nil {
			// Later statements see this one's effect even when the string is
			// refused, so the classification shown is what would have run;
			// the session only keeps it if the whole string is allowed.
			s.apply(st)
		}
		if !v.Allowed {
			continue
		}
		if reason := g.refuse(stmt, fs, kinds, unsafe); reason != "" {
			v.Allowed = false
			if len(stmts) > 1 {
				reason = fmt.Sprintf("statement %d of %d: %s", i+1, len(stmts), reason)
			}
			v.Reason = reason
		}
	}
	return v
}

// refuse returns why a statement is refused, or "".
func (g *Guard) refuse(stmt Statement, fs []finding, kinds, unsafe []string) string {
	for _, k := range kinds {
		for _, d := range g.denyKinds {
			if k == d || strings.HasPrefix(k, d+" ") {
				if k == stmt.Kind {
					return fmt.Sprintf("%s is denied by policy (deny kind %s)", stmt.Kind, d)
				}
				return fmt.Sprintf("%s contains %s, denied by policy (deny kind %s)", stmt.Kind, k, d)
			}
		}
	}
	if len(fs) == 0 {
		return stmt.Kind + " refused: the guard reached no judgement"
	}
	var class Class
	var reasons []string
	for _, f := range fs {
		if f.key != "" && g.allowKinds[f.key] {
			continue
		}
		switch {
		case f.class > class:
			class, reasons = f.class, []string{f.reason}
		case f.class == class:
			reasons = append(reasons, f.reason)
		}
	}
	if !class.Allowed(g.access) {
		reasons = dedupe(reasons)
		if class == ClassForbidden {
			return fmt.Sprintf("%s is forbidden: %s", stmt.Kind, strings.Join(reasons, "; "))
		}
		return fmt.Sprintf("%s is %s (%s) but the grant allows %s", stmt.Kind, class, strings.Join(reasons, "; "), g.access)
	}
	if len(unsafe) > 0 && !g.allowUnsafe {
		return fmt.Sprintf("%s refused: %s (unsafe write; the policy must set allow_unsafe_writes)", stmt.Kind, strings.Join(unsafe, "; "))
	}
	return ""
}
