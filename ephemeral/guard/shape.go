package guard

import (
	"sort"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The shape cache: verdicts keyed by a statement's normalized text.
//
// Clients that send literals (pgbench, most ORMs in simple-query mode) make
// every statement a distinct text, so the exact-text cache never hits and
// every statement pays a parse. The shape cache keys a verdict by pg_query's
// Normalize, which replaces each constant token by $n (PostgreSQL's own
// scanner and a raw parse, no protobuf: ~10× cheaper than Parse).
//
// A verdict is stored under a shape only when it provably cannot depend on
// the values of the constants:
//
//  1. The string is one statement, a SELECT, INSERT, UPDATE or DELETE, with
//     no $n parameters of its own, and its normalized text is exactly its
//     text with the token at every A_Const's location replaced by $1, $2, …
//     in order (checked with the scanner, see substitutes). So every text
//     with the same shape differs from it only in the constant tokens at
//     those positions, and PostgreSQL's grammar, whose choices depend on
//     token kinds and never on constant values in these positions, gives it
//     the same tree with other constant leaves (a literal $n written by the
//     client where this text had a constant gives a ParamRef leaf there).
//  2. The classifier reads no constant in this tree (constIndependent): it
//     reads constants only in utility statements' options (SET, COPY,
//     EXPLAIN, BEGIN, CREATE FUNCTION bodies; none of them is a SELECT,
//     INSERT, UPDATE or DELETE) and in the WHERE of UPDATE, DELETE and MERGE
//     (the unsafe-write folder). Each A_Const must sit in a position the
//     classifier never reads: an operand of an operator, an IN list, a
//     VALUES row, a target list entry or SET value, LIMIT or OFFSET. A
//     constant under a cast ('pg_read_file'::regproc), a function argument
//     (set_config('x','y',false), nextval('s'), lo_import('/etc/passwd')),
//     an option (DefElem) or anything else makes the statement uncacheable,
//     and MERGE never is. An UPDATE or DELETE WHERE with a constant must be
//     an AND of `column op constant` comparisons, which the folder judges
//     row-targeted whatever the constant (its column side folds to unknown,
//     and unknown compared to anything is unknown).
//
// Everything else is judged from its own parse every time (and cached by
// exact text as before).

// maxShapeConsts bounds the constants a shape may have; longer statements
// are not worth the check.
const maxShapeConsts = 256

// shapeEntry is a verdict cached by shape.
type shapeEntry struct {
	e *entry
	// prefix and suffix are the bytes of the original text before and after
	// its statement's own text, so another text's Statement.SQL can be cut.
	prefix, suffix int
}

// forText returns e's verdict for another text of the same shape.
func (s *shapeEntry) forText(sql, shape string) *entry {
	v := s.e.verdict
	v.Shape = shape
	sts := make([]Statement, len(v.Classification.Statements))
	copy(sts, v.Classification.Statements)
	if len(sts) == 1 && s.prefix+s.suffix <= len(sql) {
		sts[0].SQL = strings.TrimSpace(sql[s.prefix : len(sql)-s.suffix])
	}
	v.Classification.Statements = sts
	return &entry{stmts: s.e.stmts, verdict: v}
}

// shapeOf returns the shape key of tree's text sql when its verdict is
// constant-independent, or "".
func shapeOf(sql, norm string, tree *pg_query.ParseResult) (key string, prefix, suffix int) {
	if norm == "" || len(tree.Stmts) != 1 {
		return "", 0, 0
	}
	raw := tree.Stmts[0]
	locs, ok := constIndependent(raw.Stmt)
	if !ok || len(locs) == 0 {
		return "", 0, 0
	}
	if !substitutes(sql, norm, locs) {
		return "", 0, 0
	}
	start, n := int(raw.StmtLocation), int(raw.StmtLen)
	if n == 0 {
		n = len(sql) - start
	}
	if start < 0 || n < 0 || start+n > len(sql) || start > locs[0] {
		return "", 0, 0
	}
	return norm, start, len(sql) - (start + n)
}

// substitutes reports whether norm is exactly sql with the constant token
// at each of locs (sorted) replaced by $1, $2, …. A negative number is one
// constant: '-' followed by a numeric token.
func substitutes(sql, norm string, locs []int) bool {
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return false
	}
	toks := scan.Tokens
	var b strings.Builder
	b.Grow(len(norm))
	prev, ti := 0, 0
	for i, loc := range locs {
		for ti < len(toks) && int(toks[ti].Start) < loc {
			ti++
		}
		if ti >= len(toks) || int(toks[ti].Start) != loc || loc < prev {
			return false
		}
		end := int(toks[ti].End)
		if toks[ti].Token == pg_query.Token_ASCII_45 {
			if ti+1 >= len(toks) {
				return false
			}
			if k := toks[ti+1].Token; k != pg_query.Token_ICONST && k != pg_query.Token_FCONST {
				return false
			}
			ti++
			end = int(toks[ti].End)
		}
		if end > len(sql) || end <= loc {
			return false
		}
		b.WriteString(sql[prev:loc])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i + 1))
		prev = end
	}
	b.WriteString(sql[prev:])
	return b.String() == norm
}

// constIndependent reports whether the classifier's judgement of stmt reads
// no constant (see the comment at the top of this file), and returns the
// locations of its constants, sorted.
func constIndependent(stmt *pg_query.Node) ([]int, bool) {
	if stmt == nil {
		return nil, false
	}
	switch stmt.Node.(type) {
	case *pg_query.Node_SelectStmt, *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt:
	default:
		return nil, false
	}
	c := &constCheck{ok: true}
	c.walk(stmt.ProtoReflect(), nil, "")
	if !c.ok || len(c.locs) > maxShapeConsts {
		return nil, false
	}
	sort.Ints(c.locs)
	for i := 1; i < len(c.locs); i++ {
		if c.locs[i] == c.locs[i-1] {
			return nil, false
		}
	}
	return c.locs, true
}

type constCheck struct {
	ok   bool
	locs []int
}

// walk visits every message under m; owner is the nearest enclosing
// message that is not a Node wrapper or a List, field the field of owner
// that holds m.
func (c *constCheck) walk(m protoreflect.Message, owner protoreflect.Message, field string) {
	if !c.ok {
		return
	}
	switch x := m.Interface().(type) {
	case *pg_query.Node, *pg_query.List:
		// wrappers: keep the owner
	case *pg_query.A_Const:
		if x.Location < 0 || !constPositionOK(owner, field) {
			c.ok = false
			return
		}
		c.locs = append(c.locs, int(x.Location))
		return
	case *pg_query.ParamRef, *pg_query.DefElem, *pg_query.MergeStmt:
		// ParamRef: the text's own $n would shift Normalize's numbering.
		c.ok = false
		return
	case *pg_query.TypeCast, *pg_query.FuncCall:
		// No constant anywhere below a cast ('pg_read_file'::regproc) or a
		// function call (set_config('x','y',false), nextval('s')).
		if hasConst(m) {
			c.ok = false
			return
		}
		owner, field = m, ""
	case *pg_query.UpdateStmt:
		if !writeWhereOK(x.WhereClause) {
			c.ok = false
			return
		}
		owner, field = m, ""
	case *pg_query.DeleteStmt:
		if !writeWhereOK(x.WhereClause) {
			c.ok = false
			return
		}
		owner, field = m, ""
	default:
		owner, field = m, ""
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		f := field
		if _, wrapper := m.Interface().(*pg_query.Node); !wrapper {
			if _, list := m.Interface().(*pg_query.List); !list {
				f = string(fd.Name())
			}
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.walk(l.Get(i).Message(), owner, f)
			}
			return c.ok
		}
		c.walk(v.Message(), owner, f)
		return c.ok
	})
}

// constPositionOK is the allowlist of places a constant may sit: where the
// classifier never reads it.
func constPositionOK(owner protoreflect.Message, field string) bool {
	if owner == nil {
		return false
	}
	switch o := owner.Interface().(type) {
	case *pg_query.A_Expr:
		switch o.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_IN:
			return field == "lexpr" || field == "rexpr"
		}
	case *pg_query.ResTarget:
		return field == "val"
	case *pg_query.SelectStmt:
		return field == "values_lists" || field == "limit_count" || field == "limit_offset"
	}
	return false
}

// writeWhereOK reports whether an UPDATE or DELETE WHERE is judged the same
// whatever its constants: constant-free, or an AND of `column op constant`.
func writeWhereOK(w *pg_query.Node) bool {
	if w == nil || !hasConst(w.ProtoReflect()) {
		return true
	}
	return columnComparisons(w)
}

func columnComparisons(n *pg_query.Node) bool {
	if b := n.GetBoolExpr(); b != nil {
		if b.Boolop != pg_query.BoolExprType_AND_EXPR {
			return false
		}
		for _, a := range b.Args {
			if !columnComparisons(a) {
				return false
			}
		}
		return true
	}
	e := n.GetAExpr()
	if e == nil || e.Kind != pg_query.A_Expr_Kind_AEXPR_OP || e.Lexpr == nil || e.Rexpr == nil {
		return false
	}
	switch opName(e) {
	case "=", "<>", "!=", "<", ">", "<=", ">=":
	default:
		return false
	}
	l, r := e.Lexpr, e.Rexpr
	if r.GetColumnRef() != nil {
		l, r = r, l
	}
	return l.GetColumnRef() != nil && r.GetAConst() != nil
}

func hasConst(m protoreflect.Message) bool {
	if _, ok := m.Interface().(*pg_query.A_Const); ok {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = hasConst(l.Get(i).Message())
			}
		} else {
			found = hasConst(v.Message())
		}
		return !found
	})
	return found
}
