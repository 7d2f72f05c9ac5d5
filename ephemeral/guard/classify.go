package guard

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Errors returned by Classify. Callers deny on any error.
var (
	ErrEmpty       = errors.New("guard: no SQL statement")
	ErrInvalidUTF8 = errors.New("guard: SQL is not valid UTF-8")
	ErrNUL         = errors.New("guard: SQL contains a NUL byte")
)

// Statement is one statement of a classified SQL string.
type Statement struct {
	// SQL is the statement's own text, cut from the input by the parse tree's
	// location and length.
	SQL string
	// Kind names the statement: "SELECT", "INSERT", "COPY", "CREATE TABLE",
	// "SET", "DO", "DROP TABLE", ... (upper case).
	Kind string
	// Class is the strictest class among Reasons.
	Class Class
	// Reasons says why it got its class, strictest first, e.g.
	// "calls pg_read_file (reads files on the database server)".
	Reasons []string
	// Tables are the relations it names, as written (schema.table when
	// qualified), without CTE names.
	Tables []string
	// UnsafeWrite is set when a DELETE or UPDATE (anywhere in the statement)
	// has no WHERE or a WHERE that does not restrict rows; Reasons says which.
	// Guards refuse such statements unless Config.AllowUnsafeWrites.
	UnsafeWrite bool
}

// Classification is the judgement of a whole SQL string.
type Classification struct {
	Statements []Statement
	// Class is the strictest statement's class.
	Class Class
}

// finding is one reason for a class.
type finding struct {
	class  Class
	reason string
	// key is the AllowKinds entry that waives this finding ("" when nothing
	// can waive it, e.g. a dangerous function call).
	key string
}

// effectKind is what a statement does to per-connection SQL state.
type effectKind int

const (
	effNone effectKind = iota
	effPrepare
	effDeallocate
	effDeclare
	effClose
	effDiscardAll
)

// body is the judged body of a PREPARE or DECLARE CURSOR, remembered by a
// Session so EXECUTE and FETCH are judged by it.
type body struct {
	kind     string
	findings []finding
	kinds    []string
	unsafe   []string
}

// analysed is one statement with everything Check and Session need.
type analysed struct {
	stmt     Statement // the stateless view (EXECUTE of unknown body is forbidden)
	findings []finding // without the session-dependent part
	// stateless are the findings a check without a Session uses: findings
	// plus a refusal of EXECUTE, whose body only a Session knows.
	stateless []finding
	kinds     []string // Kind and nested kinds, upper case, for DenyKinds
	unsafe    []string // unsafe-write reasons

	eff  effectKind
	name string // PREPARE / DEALLOCATE / DECLARE / CLOSE target
	all  bool   // DEALLOCATE ALL, CLOSE ALL
	body *body  // PREPARE / DECLARE body

	execName  string // EXECUTE name run by this statement
	hasExec   bool
	fetchName string // FETCH / MOVE cursor name
	hasFetch  bool
}

// Classify parses sql with PostgreSQL's parser and classifies every
// statement in it with the default rules. An error (unparseable, empty,
// invalid UTF-8, NUL byte) means the caller must deny.
func Classify(sql string) (Classification, error) {
	stmts, err := analyse(sql, defaultFuncRules())
	if err != nil {
		return Classification{}, err
	}
	return classificationOf(stmts), nil
}

func classificationOf(stmts []analysed) Classification {
	c := Classification{Statements: make([]Statement, len(stmts))}
	for i := range stmts {
		c.Statements[i] = stmts[i].stmt
		c.Class = max(c.Class, stmts[i].stmt.Class)
	}
	return c
}

// maxBodyDepth bounds how deep procedural bodies nested in bodies are
// analysed, so quoted-inside-quoted input cannot multiply parsing work.
const maxBodyDepth = 3

// analyse parses sql and analyses each statement.
func analyse(sql string, rules *funcRules) ([]analysed, error) {
	return analyseAt(sql, rules, 0)
}

func analyseAt(sql string, rules *funcRules, depth int) ([]analysed, error) {
	_, out, err := analyseTreeAt(sql, rules, depth)
	return out, err
}

// analyseTree is analyse that also returns the parse tree.
func analyseTree(sql string, rules *funcRules) (*pg_query.ParseResult, []analysed, error) {
	return analyseTreeAt(sql, rules, 0)
}

func analyseTreeAt(sql string, rules *funcRules, depth int) (*pg_query.ParseResult, []analysed, error) {
	if !utf8.ValidString(sql) {
		return nil, nil, ErrInvalidUTF8
	}
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, nil, ErrNUL
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, nil, fmt.Errorf("guard: parse: %w", err)
	}
	if len(tree.Stmts) == 0 {
		return nil, nil, ErrEmpty
	}
	out := make([]analysed, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		if raw.Stmt == nil || raw.Stmt.Node == nil {
			return nil, nil, fmt.Errorf("guard: parse: empty statement node")
		}
		text, err := stmtText(sql, raw)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, analyseStmt(text, raw.Stmt, rules, depth))
	}
	return tree, out, nil
}

func stmtText(sql string, raw *pg_query.RawStmt) (string, error) {
	start, n := int(raw.StmtLocation), int(raw.StmtLen)
	if start < 0 || start > len(sql) || n < 0 || start+n > len(sql) {
		return "", fmt.Errorf("guard: parse: statement location %d+%d outside the input", start, n)
	}
	if n == 0 {
		n = len(sql) - start
	}
	return strings.TrimSpace(sql[start : start+n]), nil
}

// analyser walks one statement's parse tree.
type analyser struct {
	rules    *funcRules
	top      proto.Message
	findings []finding
	kinds    []string
	unsafe   []string
	tables   []string
	quals    []bool
	ctes     map[string]bool
	res      *analysed
	text     string // the statement's own SQL
	depth    int    // procedural-body nesting
}

func analyseStmt(text string, node *pg_query.Node, rules *funcRules, depth int) analysed {
	res := analysed{}
	a := &analyser{rules: rules, res: &res, ctes: map[string]bool{}, text: text, depth: depth}
	top := nodeMessage(node)
	a.top = top
	kind := a.topLevel(top)
	a.kinds = append([]string{kind}, a.kinds...)
	a.walk(top.ProtoReflect(), false)

	res.findings = a.findings
	res.kinds = dedupe(a.kinds)
	res.unsafe = dedupe(a.unsafe)
	st := Statement{SQL: text, Kind: kind, Tables: a.tableList(), UnsafeWrite: len(res.unsafe) > 0}
	fs := a.findings
	if res.hasExec {
		fs = append(append([]finding(nil), fs...), finding{class: ClassForbidden,
			reason: fmt.Sprintf("EXECUTE %s: the prepared statement's body is only known to a session", res.execName)})
	}
	st.Class, st.Reasons = summarise(fs, res.unsafe)
	res.stmt = st
	res.stateless = fs
	return res
}

// summarise orders reasons strictest first and returns the strictest class.
func summarise(fs []finding, unsafe []string) (Class, []string) {
	sorted := append([]finding(nil), fs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].class > sorted[j].class })
	var c Class
	reasons := make([]string, 0, len(sorted)+len(unsafe))
	for _, f := range sorted {
		c = max(c, f.class)
		reasons = append(reasons, f.reason)
	}
	reasons = append(reasons, unsafe...)
	return c, dedupe(reasons)
}

func utf8Valid(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

func dedupe(s []string) []string {
	if len(s) < 2 {
		return s
	}
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func (a *analyser) add(class Class, reason, key string) {
	a.findings = append(a.findings, finding{class: class, reason: reason, key: strings.ToUpper(key)})
}

// nodeMessage unwraps a *pg_query.Node to its concrete message.
func nodeMessage(n *pg_query.Node) proto.Message {
	m := n.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("node")
	fd := m.WhichOneof(od)
	if fd == nil {
		return n
	}
	return m.Get(fd).Message().Interface()
}

// walk visits every message in the tree below m, generically, so no node type
// can hide a function call or a data-modifying statement from the guard.
func (a *analyser) walk(m protoreflect.Message, planOnly bool) {
	msg := m.Interface()
	if _, isNode := msg.(*pg_query.Node); !isNode {
		if !a.visit(msg, planOnly) {
			return
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				a.walk(l.Get(i).Message(), planOnly)
			}
			return true
		}
		a.walk(v.Message(), planOnly)
		return true
	})
}

// visit records what one node means; it returns false when it has walked
// the node's children itself.
func (a *analyser) visit(msg proto.Message, planOnly bool) bool {
	isTop := msg == a.top
	switch n := msg.(type) {
	case *pg_query.FuncCall:
		schema, name := funcName(n.Funcname)
		if f, ok := a.rules.judge(schema, name); ok && (!planOnly || f.class == ClassForbidden) {
			a.findings = append(a.findings, f)
		}
	case *pg_query.RangeVar:
		a.addTable(n)
		if reason, ok := sensitiveRelations[n.Relname]; ok && (n.Schemaname == "" || n.Schemaname == "pg_catalog") {
			a.add(ClassForbidden, "reads "+n.Relname+" ("+reason+")", "")
		}
	case *pg_query.ObjectWithArgs:
		a.namesFunction(n.Objname)
	case *pg_query.CreateFunctionStmt:
		a.namesFunction(n.Funcname)
	case *pg_query.CreateTrigStmt:
		a.namesFunction(n.Funcname)
	case *pg_query.CreateEventTrigStmt:
		a.namesFunction(n.Funcname)
	case *pg_query.DefineStmt:
		for _, d := range n.Definition {
			if de := d.GetDefElem(); de != nil && de.Arg != nil {
				switch {
				case de.Arg.GetTypeName() != nil:
					a.namesFunction(de.Arg.GetTypeName().Names)
				case de.Arg.GetList() != nil:
					a.namesFunction(de.Arg.GetList().Items)
				}
			}
		}
	case *pg_query.CommonTableExpr:
		a.ctes[n.Ctename] = true
	case *pg_query.InsertStmt:
		a.dml("INSERT", isTop, planOnly)
	case *pg_query.UpdateStmt:
		a.dml("UPDATE", isTop, planOnly)
		if !planOnly {
			a.checkWhere("UPDATE", n.WhereClause)
		}
	case *pg_query.DeleteStmt:
		a.dml("DELETE", isTop, planOnly)
		if !planOnly {
			a.checkWhere("DELETE", n.WhereClause)
		}
	case *pg_query.MergeStmt:
		a.dml("MERGE", isTop, planOnly)
		if !planOnly {
			a.checkMerge(n)
		}
	case *pg_query.SelectStmt:
		if planOnly {
			break
		}
		if len(n.LockingClause) > 0 {
			a.add(ClassWrite, "SELECT ... FOR UPDATE/SHARE locks rows", "SELECT FOR UPDATE")
			a.kinds = append(a.kinds, "SELECT FOR UPDATE")
		}
		if n.IntoClause != nil {
			a.add(ClassAdmin, "SELECT INTO creates a table", "SELECT INTO")
			a.kinds = append(a.kinds, "SELECT INTO")
		}
	case *pg_query.CreateTableAsStmt:
		if !isTop && !planOnly {
			a.add(ClassAdmin, "creates a table from a query", "CREATE TABLE AS")
			a.kinds = append(a.kinds, "CREATE TABLE AS")
		}
	case *pg_query.ExplainStmt:
		if n.Query != nil {
			a.walk(n.Query.ProtoReflect(), planOnly || !explainAnalyze(n.Options))
		}
		return false
	case *pg_query.ExecuteStmt:
		if !planOnly {
			a.res.hasExec, a.res.execName = true, n.Name
		}
	case *pg_query.PrepareStmt:
		if isTop && n.Query != nil {
			b := a.subBody("PREPARE", n.Query)
			a.res.eff, a.res.name, a.res.body = effPrepare, n.Name, b
			return false
		}
	case *pg_query.DeclareCursorStmt:
		if isTop && n.Query != nil {
			b := a.subBody("DECLARE CURSOR", n.Query)
			a.res.eff, a.res.name, a.res.body = effDeclare, n.Portalname, b
			return false
		}
	}
	return true
}

// namesFunction forbids DDL that names a dangerous function: renaming it,
// granting it, binding it to a cast, operator, aggregate or trigger, or
// defining a function under its name would let a later, innocent-looking
// statement call it.
func (a *analyser) namesFunction(parts []*pg_query.Node) {
	schema, name := funcName(parts)
	if name == "" {
		return
	}
	if f, ok := a.rules.judge(schema, name); ok && f.class == ClassForbidden {
		a.add(ClassForbidden, "names a dangerous function: "+strings.TrimPrefix(f.reason, "calls "), "")
	}
}

// sensitiveRelations are catalogs that expose credentials or server files.
// Default privileges already keep them from ordinary roles; the guard
// refuses them too.
var sensitiveRelations = map[string]string{
	"pg_authid":              "password hashes",
	"pg_shadow":              "password hashes",
	"pg_user_mappings":       "foreign-server credentials",
	"pg_hba_file_rules":      "server configuration files",
	"pg_ident_file_mappings": "server configuration files",
	"pg_file_settings":       "server configuration files",
}

// subBody analyses the body of a PREPARE or DECLARE, merges its findings
// into the statement and returns them for the session.
func (a *analyser) subBody(outer string, q *pg_query.Node) *body {
	sub := &analyser{rules: a.rules, res: &analysed{}, ctes: a.ctes, depth: a.depth}
	m := nodeMessage(q)
	sub.top = m
	kind := sub.topLevel(m)
	sub.kinds = append([]string{kind}, sub.kinds...)
	sub.walk(m.ProtoReflect(), false)
	a.findings = append(a.findings, sub.findings...)
	a.kinds = append(a.kinds, sub.kinds...)
	a.unsafe = append(a.unsafe, sub.unsafe...)
	a.tables = append(a.tables, sub.tables...)
	a.quals = append(a.quals, sub.quals...)
	if sub.res.hasExec { // not reachable with PostgreSQL's grammar; fail closed
		a.add(ClassForbidden, outer+" of an EXECUTE", "")
	}
	return &body{kind: kind, findings: sub.findings, kinds: dedupe(sub.kinds), unsafe: dedupe(sub.unsafe)}
}

func (a *analyser) dml(kind string, isTop, planOnly bool) {
	if planOnly {
		return
	}
	a.kinds = append(a.kinds, kind)
	if isTop {
		a.add(ClassWrite, kind+" modifies data", kind)
		return
	}
	a.add(ClassWrite, "contains a data-modifying "+kind, kind)
}

func (a *analyser) addTable(rv *pg_query.RangeVar) {
	name := rv.Relname
	if rv.Schemaname != "" {
		name = rv.Schemaname + "." + name
	}
	if rv.Catalogname != "" {
		name = rv.Catalogname + "." + name
	}
	a.tables = append(a.tables, name)
	a.quals = append(a.quals, rv.Schemaname != "")
}

func (a *analyser) tableList() []string {
	var out []string
	seen := map[string]bool{}
	for i, t := range a.tables {
		if (!a.quals[i] && a.ctes[t]) || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}

// funcName returns the schema (may be empty) and name of a function call.
func funcName(parts []*pg_query.Node) (schema, name string) {
	var s []string
	for _, p := range parts {
		if str := p.GetString_(); str != nil {
			s = append(s, str.Sval)
		}
	}
	switch len(s) {
	case 0:
		return "", ""
	case 1:
		return "", s[0]
	}
	return s[len(s)-2], s[len(s)-1]
}

// explainAnalyze reports whether EXPLAIN options make it run the statement.
// It mirrors PostgreSQL's defGetBoolean: only integer 0 and the strings
// false and off turn ANALYZE off; anything else runs (or is an error).
func explainAnalyze(opts []*pg_query.Node) bool {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || !strings.EqualFold(d.Defname, "analyze") {
			continue
		}
		switch {
		case d.Arg == nil:
			return true
		case d.Arg.GetInteger() != nil:
			if d.Arg.GetInteger().Ival != 0 {
				return true
			}
		case d.Arg.GetString_() != nil:
			v := d.Arg.GetString_().Sval
			if !strings.EqualFold(v, "false") && !strings.EqualFold(v, "off") {
				return true
			}
		case d.Arg.GetBoolean() != nil:
			if d.Arg.GetBoolean().Boolval {
				return true
			}
		default:
			return true
		}
	}
	return false
}

func isFalseLiteral(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "off", "false", "no", "0", "f", "n":
		return true
	}
	return false
}

// constString reads a plain constant (string, number, boolean) as text.
func constString(n *pg_query.Node) (string, bool) {
	switch {
	case n.GetString_() != nil:
		return n.GetString_().Sval, true
	case n.GetInteger() != nil:
		return fmt.Sprint(n.GetInteger().Ival), true
	case n.GetFloat() != nil:
		return n.GetFloat().Fval, true
	case n.GetBoolean() != nil:
		if n.GetBoolean().Boolval {
			return "true", true
		}
		return "false", true
	case n.GetAConst() != nil:
		c := n.GetAConst()
		switch {
		case c.Isnull:
			return "", false
		case c.GetSval() != nil:
			return c.GetSval().Sval, true
		case c.GetIval() != nil:
			return fmt.Sprint(c.GetIval().Ival), true
		case c.GetFval() != nil:
			return c.GetFval().Fval, true
		case c.GetBoolval() != nil:
			if c.GetBoolval().Boolval {
				return "true", true
			}
			return "false", true
		}
	}
	return "", false
}
