package mask

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Lineage is what the parse tree says about each output column of ONE statement.
type Lineage struct {
	// Columns are the output columns in order. An entry with Star set stands for the
	// expansion of a star (`*`, `t.*`, `(expr).*`) into zero or more columns.
	Columns []ColumnLineage
	// Unknown means the statement's output cannot be described (not a query, or a
	// statement the analyzer does not model): every non-table column is redacted.
	Unknown bool
	// Relations are the plain relations (tables, views, ...; not CTEs) the statement
	// reads, as written (Schema empty when unqualified). The engine SHOULD set Kind
	// from the catalog (see [RelKindQuery]); a relation whose Kind is not 'r' or 'p'
	// makes every computed column that reads it redacted, since it could be a view
	// that renames a masked column.
	Relations []Relation
	// Reads is everything the statement reads anywhere: output columns, WHERE, JOIN,
	// GROUP BY, ORDER BY, subqueries, nested queries of utility statements (EXPLAIN,
	// CREATE TABLE AS, COPY). Error and notice texts can quote any of it
	// (`SELECT 1 FROM users WHERE card_number::int = 0` prints the card number in
	// the error); see [Masker.Sensitive].
	Reads ColumnLineage
}

// Relation is a relation named in a statement.
type Relation struct {
	Schema, Name string
	// Kind is pg_class.relkind as the engine resolved it: 'r','p' table, 'v' view,
	// 'm' materialized view, 'f' foreign table; 0 = not resolved.
	Kind byte
}

// QuotedName is the relation as a quoted SQL identifier, for to_regclass.
func (r Relation) QuotedName() string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	if r.Schema == "" {
		return q(r.Name)
	}
	return q(r.Schema) + "." + q(r.Name)
}

// RelKindQuery looks up the kind of one relation, $1 = [Relation.QuotedName]. Run it in
// the client's session (same search_path) or qualify; no row or NULL means unresolved.
const RelKindQuery = `SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`

// ColumnLineage describes where one output column's data comes from.
type ColumnLineage struct {
	Direct   bool        // a plain column reference (no function/cast/operator around it)
	Refs     []ColumnRef // columns that feed it; Schema/Table may be empty when unqualified/unresolved
	WholeRow bool        // t, t.*, ROW(...), row_to_json(t) etc.
	Opaque   bool        // data could come from somewhere the tree does not show (user function, subquery over unknown)
	Star     bool        // this entry stands for zero or more columns of a star expansion
}

func (c *ColumnLineage) merge(o ColumnLineage) {
	for _, r := range o.Refs {
		if !slices.Contains(c.Refs, r) {
			c.Refs = append(c.Refs, r)
		}
	}
	c.WholeRow = c.WholeRow || o.WholeRow
	c.Opaque = c.Opaque || o.Opaque
}

func (c ColumnLineage) String() string {
	var b strings.Builder
	for i, r := range c.Refs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return fmt.Sprintf("{direct=%t refs=[%s] whole=%t opaque=%t star=%t}", c.Direct, b.String(), c.WholeRow, c.Opaque, c.Star)
}

// Analyze parses sql with PostgreSQL's parser and returns one Lineage per statement,
// in order. Statements other than queries get Lineage{Unknown: true}, except DML with
// RETURNING, whose returned columns also carry the lineage of the values written.
// A parse error is returned as an error: the caller must then treat every column as
// of unknown lineage.
func Analyze(sql string) ([]Lineage, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("mask: parse: %w", err)
	}
	out := make([]Lineage, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		a := &analyzer{}
		lin := a.statement(raw.Stmt)
		for _, c := range lin.Columns {
			a.reads.merge(c)
		}
		lin.Relations = a.rels
		lin.Reads = a.reads
		lin.Reads.Direct, lin.Reads.Star = false, false
		out = append(out, lin)
	}
	return out, nil
}

// maxDepth bounds the analyzer's recursion; deeper trees are opaque.
const maxDepth = 256

type analyzer struct {
	rels  []Relation
	reads ColumnLineage
	depth int
}

func (a *analyzer) addRel(r Relation) {
	for _, x := range a.rels {
		if x.Schema == r.Schema && x.Name == r.Name {
			return
		}
	}
	a.rels = append(a.rels, r)
}

// source is anything a FROM item or CTE name stands for.
type source struct {
	base    *Relation       // a plain relation
	renamed map[string]bool // base columns renamed by an alias list (original unknown)
	cols    []namedCol      // known output columns of a derived source
	tail    *ColumnLineage  // further columns of unknown names; nil when cols is complete
	members []*source       // a join: its two sides
	inexact bool            // a join whose star expansion merges columns (USING, NATURAL)
}

type namedCol struct {
	name string
	lin  ColumnLineage
}

func (s *source) baseRef(col string) ColumnRef {
	return ColumnRef{Schema: s.base.Schema, Table: s.base.Name, Column: col}
}

// column looks a column up by name. definite reports that the source surely has it.
func (s *source) column(name string) (lin ColumnLineage, definite, found bool) {
	switch {
	case s.base != nil:
		col := name
		if s.renamed[name] {
			col = ""
		}
		return ColumnLineage{Direct: true, Refs: []ColumnRef{s.baseRef(col)}}, false, true
	case s.members != nil:
		n := 0
		for _, m := range s.members {
			l, d, f := m.column(name)
			if f {
				n++
				if n == 1 {
					lin = l
				} else {
					lin.merge(l)
					lin.Direct = false
				}
				definite = definite || d
				found = true
			}
		}
		return lin, definite, found
	}
	n := 0
	for _, c := range s.cols {
		if strings.EqualFold(c.name, name) {
			n++
			if n == 1 {
				lin = c.lin
			} else {
				lin.merge(c.lin)
				lin.Direct = false
			}
		}
	}
	if n > 0 {
		lin.Star = false
		return lin, true, true
	}
	if s.tail != nil {
		l := *s.tail
		l.Star = false
		if l.Direct && len(l.Refs) == 1 && l.Refs[0].Column == "" {
			// The columns of `SELECT * FROM t`: the name is t's column name.
			r := l.Refs[0]
			r.Column = name
			l.Refs = []ColumnRef{r}
		}
		return l, false, true
	}
	return ColumnLineage{}, false, false
}

// all merges the lineage of every column the source has.
func (s *source) all() ColumnLineage {
	var out ColumnLineage
	switch {
	case s.base != nil:
		out.Refs = []ColumnRef{s.baseRef("")}
	case s.members != nil:
		for _, m := range s.members {
			out.merge(m.all())
		}
	default:
		for _, c := range s.cols {
			out.merge(c.lin)
		}
		if s.tail != nil {
			out.merge(*s.tail)
		}
	}
	return out
}

// whole is a whole-row reference to the source.
func (s *source) whole() ColumnLineage {
	out := s.all()
	out.WholeRow = true
	return out
}

// star is the expansion of `s.*` in a target list.
func (s *source) star() []ColumnLineage {
	switch {
	case s.base != nil:
		// Renamed columns (FROM t AS x(a, b)) cannot be told apart by name any more.
		return []ColumnLineage{{Star: true, Direct: s.renamed == nil, Refs: []ColumnRef{s.baseRef("")}}}
	case s.members != nil:
		var out []ColumnLineage
		for _, m := range s.members {
			out = append(out, m.star()...)
		}
		if s.inexact {
			return collapse(out)
		}
		return out
	}
	out := make([]ColumnLineage, 0, len(s.cols)+1)
	for _, c := range s.cols {
		out = append(out, c.lin)
	}
	if s.tail != nil {
		t := *s.tail
		t.Star = true
		out = append(out, t)
	}
	return out
}

// collapse turns columns whose count is not exact into one star entry.
func collapse(cols []ColumnLineage) []ColumnLineage {
	if len(cols) == 0 {
		return nil
	}
	var u ColumnLineage
	for _, c := range cols {
		u.merge(c)
	}
	u.Star = true
	return []ColumnLineage{u}
}

func derived(cols []ColumnLineage, names []string, alias *pg.Alias) *source {
	s := &source{}
	for i, c := range cols {
		if c.Star {
			// Names after a star are no longer positional; keep them by name and let
			// the star's columns answer any other name.
			if s.tail == nil {
				t := c
				s.tail = &t
				continue
			}
			s.tail.merge(c)
			s.tail.Direct = false
			continue
		}
		name := ""
		if i < len(names) {
			name = names[i]
		}
		s.cols = append(s.cols, namedCol{name: name, lin: c})
	}
	if alias != nil && len(alias.Colnames) > 0 {
		if s.tail != nil {
			// Positional renaming over a star: names are unknown.
			for i := range s.cols {
				s.cols[i].name = ""
			}
			for _, n := range alias.Colnames {
				s.cols = append(s.cols, namedCol{name: str(n), lin: s.all()})
			}
			return s
		}
		for i, n := range alias.Colnames {
			if i < len(s.cols) {
				s.cols[i].name = str(n)
			}
		}
	}
	return s
}

func str(n *pg.Node) string {
	if s := n.GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

// scope is one level of name visibility: a FROM list, or a WITH list.
type scope struct {
	parent  *scope
	ctes    map[string]*source
	items   []item
	roots   []*source // FROM items in order, for `*`
	inexact bool      // a USING/NATURAL join: `*` cannot be expanded column by column
}

type item struct {
	name, schema string
	src          *source
	join         bool // a join alias: also visible through its members
}

func (s *scope) cte(name string) *source {
	for l := s; l != nil; l = l.parent {
		if c, ok := l.ctes[name]; ok {
			return c
		}
	}
	return nil
}

// statement analyses one top-level statement.
func (a *analyzer) statement(n *pg.Node) Lineage {
	switch n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		cols, _ := a.query(n, nil)
		return Lineage{Columns: cols}
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		cols, _, returning := a.dml(n, nil)
		if !returning {
			return Lineage{Unknown: true}
		}
		return Lineage{Columns: cols}
	case *pg.Node_CopyStmt:
		c := n.GetCopyStmt()
		if c.Relation != nil {
			rel := Relation{Schema: c.Relation.Schemaname, Name: c.Relation.Relname}
			a.addRel(rel)
			if len(c.Attlist) == 0 {
				a.reads.Refs = append(a.reads.Refs, ColumnRef{Schema: rel.Schema, Table: rel.Name})
			}
			for _, at := range c.Attlist {
				a.reads.merge(ColumnLineage{Refs: []ColumnRef{{Schema: rel.Schema, Table: rel.Name, Column: str(at)}}})
			}
		}
		if c.Query != nil {
			cols, _ := a.query(c.Query, nil)
			for _, col := range cols {
				a.reads.merge(col)
			}
		}
		if c.IsProgram || c.WhereClause != nil {
			a.reads.Opaque = true
		}
		return Lineage{Unknown: true}
	case *pg.Node_DoStmt, *pg.Node_ExecuteStmt, *pg.Node_FetchStmt, *pg.Node_CallStmt:
		// Code or a query the statement text does not show.
		a.reads.Opaque = true
		return Lineage{Unknown: true}
	}
	// Other statements: what they read is whatever queries and expressions they
	// contain (EXPLAIN, CREATE TABLE AS, DECLARE CURSOR, PREPARE, ...).
	a.reads.merge(a.generic(n, nil))
	return Lineage{Unknown: true}
}

var opaqueStar = []ColumnLineage{{Star: true, Opaque: true}}

// query analyses anything that returns rows inside a statement (a SELECT, or DML with
// RETURNING in a CTE).
func (a *analyzer) query(n *pg.Node, parent *scope) ([]ColumnLineage, []string) {
	if a.depth > maxDepth {
		return opaqueStar, nil
	}
	a.depth++
	defer func() { a.depth-- }()
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return a.selectStmt(x.SelectStmt, parent)
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		cols, names, _ := a.dml(n, parent)
		return cols, names
	}
	return opaqueStar, nil
}

func (a *analyzer) selectStmt(s *pg.SelectStmt, parent *scope) ([]ColumnLineage, []string) {
	if s == nil {
		return opaqueStar, nil
	}
	sc := parent
	if s.WithClause != nil {
		sc = a.with(s.WithClause, parent)
	}
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		lc, names := a.selectStmt(s.Larg, sc)
		rc, _ := a.selectStmt(s.Rarg, sc)
		out := setop(lc, rc)
		// ORDER BY and LIMIT of a set operation name its output columns.
		var all ColumnLineage
		for _, c := range out {
			all.merge(c)
		}
		if len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil {
			a.reads.merge(all)
		}
		return out, names
	}
	if len(s.ValuesLists) > 0 {
		var cols []ColumnLineage
		var names []string
		for _, row := range s.ValuesLists {
			items := row.GetList().GetItems()
			for i, e := range items {
				if i >= len(cols) {
					cols = append(cols, ColumnLineage{})
					names = append(names, fmt.Sprintf("column%d", i+1))
				}
				cols[i].merge(a.expr(e, sc))
			}
		}
		return cols, names
	}
	lvl := &scope{parent: sc}
	for _, f := range s.FromClause {
		a.from(f, lvl)
	}
	cols, names := a.targets(s.TargetList, lvl)
	for _, c := range cols {
		a.reads.merge(c)
	}
	for _, e := range []*pg.Node{s.WhereClause, s.HavingClause, s.LimitCount, s.LimitOffset} {
		a.reads.merge(a.expr(e, lvl))
	}
	for _, list := range [][]*pg.Node{s.GroupClause, s.SortClause, s.DistinctClause, s.WindowClause} {
		for _, e := range list {
			a.reads.merge(a.expr(e, lvl))
		}
	}
	return cols, names
}

// setop combines the columns of UNION/INTERSECT/EXCEPT branches: column i carries
// the lineage of column i of both sides, and is never a plain column.
func setop(l, r []ColumnLineage) []ColumnLineage {
	if len(l) != len(r) {
		return collapse(append(slices.Clone(l), r...))
	}
	out := make([]ColumnLineage, len(l))
	for i := range l {
		out[i] = ColumnLineage{Star: l[i].Star || r[i].Star}
		out[i].merge(l[i])
		out[i].merge(r[i])
	}
	return out
}

func (a *analyzer) with(w *pg.WithClause, parent *scope) *scope {
	sc := &scope{parent: parent, ctes: map[string]*source{}}
	for _, n := range w.Ctes {
		cte := n.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		alias := &pg.Alias{Colnames: cte.Aliascolnames}
		if !w.Recursive {
			cols, names := a.query(cte.Ctequery, sc)
			sc.ctes[cte.Ctename] = derived(cols, names, alias)
			continue
		}
		// A recursive CTE reads itself: iterate to a fixpoint, starting from nothing.
		sc.ctes[cte.Ctename] = &source{tail: &ColumnLineage{}}
		prev := ""
		for iter := 0; ; iter++ {
			cols, names := a.query(cte.Ctequery, sc)
			key := fmt.Sprint(cols)
			src := derived(cols, names, alias)
			sc.ctes[cte.Ctename] = src
			if key == prev {
				break
			}
			if iter == 16 {
				u := src.all()
				u.Opaque = true
				sc.ctes[cte.Ctename] = &source{tail: &u}
				break
			}
			prev = key
		}
	}
	return sc
}

// from adds one FROM item to lvl and returns its source.
func (a *analyzer) from(n *pg.Node, lvl *scope) *source {
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		return a.rangeVar(x.RangeVar, lvl)
	case *pg.Node_RangeSubselect:
		cols, names := a.query(x.RangeSubselect.Subquery, lvl)
		src := derived(cols, names, x.RangeSubselect.Alias)
		lvl.add(item{name: aliasName(x.RangeSubselect.Alias), src: src})
		return src
	case *pg.Node_RangeFunction:
		rf := x.RangeFunction
		var lin ColumnLineage
		name := ""
		for _, f := range rf.Functions {
			items := f.GetList().GetItems()
			if len(items) == 0 {
				lin.Opaque = true
				continue
			}
			lin.merge(a.expr(items[0], lvl))
			if fc := items[0].GetFuncCall(); fc != nil && name == "" {
				_, name = funcName(fc)
			}
		}
		if rf.Alias != nil {
			name = rf.Alias.Aliasname
		}
		src := &source{tail: &lin}
		if rf.Alias != nil {
			for _, c := range rf.Alias.Colnames {
				src.cols = append(src.cols, namedCol{name: str(c), lin: lin})
			}
		}
		lvl.add(item{name: name, src: src})
		return src
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		l := a.from(j.Larg, lvl)
		r := a.from(j.Rarg, lvl)
		src := &source{members: []*source{l, r}, inexact: j.IsNatural || len(j.UsingClause) > 0}
		if src.inexact {
			lvl.inexact = true
		}
		a.reads.merge(a.expr(j.Quals, lvl))
		// The roots were added by the two sides; replace them with the join.
		lvl.roots = slices.DeleteFunc(lvl.roots, func(s *source) bool { return s == l || s == r })
		lvl.roots = append(lvl.roots, src)
		if j.Alias != nil {
			lvl.items = append(lvl.items, item{name: j.Alias.Aliasname, src: src, join: true})
		}
		if j.JoinUsingAlias != nil {
			lvl.items = append(lvl.items, item{name: j.JoinUsingAlias.Aliasname, src: src, join: true})
		}
		return src
	case *pg.Node_RangeTableSample:
		return a.from(x.RangeTableSample.Relation, lvl)
	}
	// XMLTABLE, JSON_TABLE and anything newer: its columns come from expressions the
	// analyzer does not model in detail.
	lin := a.generic(n, lvl)
	lin.Opaque = true
	src := &source{tail: &lin}
	lvl.add(item{name: anyAlias(n), src: src})
	return src
}

func (lvl *scope) add(it item) {
	lvl.items = append(lvl.items, it)
	lvl.roots = append(lvl.roots, it.src)
}

func (a *analyzer) rangeVar(rv *pg.RangeVar, lvl *scope) *source {
	name := rv.Relname
	if rv.Alias != nil {
		name = rv.Alias.Aliasname
	}
	if rv.Schemaname == "" {
		if c := lvl.cte(rv.Relname); c != nil {
			src := c
			if rv.Alias != nil && len(rv.Alias.Colnames) > 0 {
				cp := *c
				cp.cols = slices.Clone(c.cols)
				for i, n := range rv.Alias.Colnames {
					if i < len(cp.cols) {
						cp.cols[i].name = str(n)
					} else if cp.tail != nil {
						cp.cols = append(cp.cols, namedCol{name: str(n), lin: *cp.tail})
					}
				}
				src = &cp
			}
			lvl.add(item{name: name, src: src})
			return src
		}
	}
	rel := Relation{Schema: rv.Schemaname, Name: rv.Relname}
	a.addRel(rel)
	src := &source{base: &rel}
	if rv.Alias != nil && len(rv.Alias.Colnames) > 0 {
		src.renamed = map[string]bool{}
		for _, n := range rv.Alias.Colnames {
			src.renamed[str(n)] = true
		}
	}
	lvl.add(item{name: name, schema: rv.Schemaname, src: src})
	return src
}

func aliasName(al *pg.Alias) string {
	if al == nil {
		return ""
	}
	return al.Aliasname
}

// anyAlias finds the Alias field of an unmodelled FROM item.
func anyAlias(n *pg.Node) string {
	name := ""
	n.ProtoReflect().Range(func(_ protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		m := v.Message()
		f := m.Descriptor().Fields().ByName("alias")
		if f != nil && m.Has(f) {
			if al, ok := m.Get(f).Message().Interface().(*pg.Alias); ok {
				name = al.Aliasname
			}
		}
		return false
	})
	return name
}

// targets analyses a target list (SELECT list or RETURNING list) in scope lvl.
func (a *analyzer) targets(list []*pg.Node, lvl *scope) ([]ColumnLineage, []string) {
	var cols []ColumnLineage
	var names []string
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil || rt.Val == nil {
			cols = append(cols, ColumnLineage{Star: true, Opaque: true})
			names = append(names, "")
			continue
		}
		if exp, ok := a.starTarget(rt.Val, lvl); ok {
			cols = append(cols, exp...)
			for range exp {
				names = append(names, "")
			}
			continue
		}
		cols = append(cols, a.expr(rt.Val, lvl))
		names = append(names, colName(rt))
	}
	return cols, names
}

// starTarget expands `*`, `t.*` and `(expr).*` in a target list.
func (a *analyzer) starTarget(n *pg.Node, lvl *scope) ([]ColumnLineage, bool) {
	if ind := n.GetAIndirection(); ind != nil {
		if k := len(ind.Indirection); k > 0 && ind.Indirection[k-1].GetAStar() != nil {
			l := a.expr(ind.Arg, lvl)
			l.Direct = false
			l.Star = true
			return []ColumnLineage{l}, true
		}
		return nil, false
	}
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) == 0 || cr.Fields[len(cr.Fields)-1].GetAStar() == nil {
		return nil, false
	}
	if len(cr.Fields) == 1 {
		var out []ColumnLineage
		for _, s := range lvl.roots {
			out = append(out, s.star()...)
		}
		if lvl.inexact {
			out = collapse(out)
		}
		return out, true
	}
	srcs := a.lookupItems(cr.Fields[:len(cr.Fields)-1], lvl)
	if len(srcs) == 0 {
		return []ColumnLineage{{Star: true, Opaque: true}}, true
	}
	if len(srcs) > 1 {
		var out []ColumnLineage
		for _, s := range srcs {
			out = append(out, s.star()...)
		}
		return collapse(out), true
	}
	return srcs[0].star(), true
}

// lookupItems finds the FROM items a qualifier (t, or s.t, or c.s.t) names, innermost
// level first.
func (a *analyzer) lookupItems(qual []*pg.Node, lvl *scope) []*source {
	parts := make([]string, len(qual))
	for i, q := range qual {
		parts[i] = str(q)
	}
	name := parts[len(parts)-1]
	schema := ""
	if len(parts) >= 2 {
		schema = parts[len(parts)-2]
	}
	for l := lvl; l != nil; l = l.parent {
		var out []*source
		for _, it := range l.items {
			if !strings.EqualFold(it.name, name) {
				continue
			}
			if schema != "" && !strings.EqualFold(it.schema, schema) {
				continue
			}
			out = append(out, it.src)
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// columnRef resolves a column reference in an expression.
func (a *analyzer) columnRef(cr *pg.ColumnRef, lvl *scope) ColumnLineage {
	f := cr.Fields
	if len(f) == 0 {
		return ColumnLineage{Opaque: true}
	}
	if f[len(f)-1].GetAStar() != nil { // t.* or * inside an expression: a whole row
		var srcs []*source
		if len(f) == 1 {
			srcs = lvl.roots
		} else {
			srcs = a.lookupItems(f[:len(f)-1], lvl)
		}
		if len(srcs) == 0 {
			return ColumnLineage{WholeRow: true, Opaque: true}
		}
		var out ColumnLineage
		for _, s := range srcs {
			out.merge(s.whole())
		}
		return out
	}
	if len(f) == 1 {
		return a.unqualified(str(f[0]), lvl)
	}
	col := str(f[len(f)-1])
	srcs := a.lookupItems(f[:len(f)-1], lvl)
	var out ColumnLineage
	if len(srcs) > 0 {
		n := 0
		for _, s := range srcs {
			l, _, found := s.column(col)
			if !found {
				l = s.all() // PostgreSQL would reject the name; assume anything
			}
			n++
			if n == 1 {
				out = l
			} else {
				out.merge(l)
				out.Direct = false
			}
		}
		return out
	}
	// Not a relation: a field of a composite column (a.b), or a 3-part name that
	// does not resolve. Assume the first part is a column and take all of it.
	out = a.unqualified(str(f[0]), lvl)
	if len(f) >= 3 {
		out.merge(a.columnRef(&pg.ColumnRef{Fields: f[1:]}, lvl))
	}
	out.Direct = false
	return out
}

// unqualified resolves a bare name: a column of some FROM item, possibly of an outer
// level, or else a whole-row reference to a FROM item of that name.
func (a *analyzer) unqualified(name string, lvl *scope) ColumnLineage {
	var out ColumnLineage
	n := 0
	add := func(l ColumnLineage) {
		n++
		if n == 1 {
			out = l
			return
		}
		out.merge(l)
		out.Direct = false
	}
	for l := lvl; l != nil; l = l.parent {
		definite := false
		for _, it := range l.items {
			if it.join {
				continue
			}
			lin, d, found := it.src.column(name)
			if found {
				add(lin)
				definite = definite || d
			}
		}
		for _, it := range l.items {
			if strings.EqualFold(it.name, name) { // may be a whole-row reference
				add(it.src.whole())
			}
		}
		if definite {
			break
		}
	}
	if n > 0 {
		return out
	}
	// Nothing can have it: assume it is anything visible.
	out = ColumnLineage{Refs: []ColumnRef{{Column: name}}}
	for l := lvl; l != nil; l = l.parent {
		for _, it := range l.items {
			out.merge(it.src.all())
		}
	}
	return out
}

// expr returns the lineage of an expression. Only a bare column reference is Direct.
func (a *analyzer) expr(n *pg.Node, lvl *scope) ColumnLineage {
	if n == nil {
		return ColumnLineage{}
	}
	if a.depth > maxDepth {
		return ColumnLineage{Opaque: true}
	}
	a.depth++
	defer func() { a.depth-- }()
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		return a.columnRef(x.ColumnRef, lvl)
	case *pg.Node_FuncCall:
		return a.funcCall(x.FuncCall, lvl)
	case *pg.Node_SubLink:
		var out ColumnLineage
		cols, _ := a.query(x.SubLink.Subselect, lvl)
		for _, c := range cols {
			out.merge(c)
		}
		out.merge(a.expr(x.SubLink.Testexpr, lvl))
		return out
	case *pg.Node_RowExpr:
		var out ColumnLineage
		for _, e := range x.RowExpr.Args {
			out.merge(a.expr(e, lvl))
		}
		out.WholeRow = true
		return out
	case *pg.Node_SelectStmt:
		var out ColumnLineage
		cols, _ := a.selectStmt(x.SelectStmt, lvl)
		for _, c := range cols {
			out.merge(c)
		}
		return out
	case *pg.Node_AConst, *pg.Node_ParamRef, *pg.Node_SqlvalueFunction, *pg.Node_String_,
		*pg.Node_Integer, *pg.Node_Float, *pg.Node_Boolean, *pg.Node_TypeName:
		return ColumnLineage{}
	}
	out := a.generic(n, lvl)
	out.Direct = false
	return out
}

// generic merges the lineage of every expression under n, whatever its node type, so a
// node type the analyzer does not know cannot hide a column reference.
func (a *analyzer) generic(n *pg.Node, lvl *scope) ColumnLineage {
	var out ColumnLineage
	var walk func(m protoreflect.Message)
	visit := func(m protoreflect.Message) {
		switch x := m.Interface().(type) {
		case *pg.Node:
			out.merge(a.expr(x, lvl))
		case *pg.SelectStmt:
			cols, _ := a.selectStmt(x, lvl)
			for _, c := range cols {
				out.merge(c)
			}
		default:
			walk(m)
		}
	}
	walk = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			} else if !fd.IsMap() {
				visit(v.Message())
			}
			return true
		})
	}
	n.ProtoReflect().Range(func(_ protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if m := v.Message(); m.IsValid() {
			walk(m)
		}
		return true
	})
	return out
}

func funcName(fc *pg.FuncCall) (schema, name string) {
	parts := fc.Funcname
	if len(parts) == 0 {
		return "", ""
	}
	name = strings.ToLower(str(parts[len(parts)-1]))
	if len(parts) >= 2 {
		schema = strings.ToLower(str(parts[len(parts)-2]))
	}
	return schema, name
}

// funcCall: the output of an allow-listed built-in function is derived from its
// arguments only; any other function may read anything and is opaque. ORDER BY and
// FILTER inside an aggregate, and window clauses, do not feed the value.
func (a *analyzer) funcCall(fc *pg.FuncCall, lvl *scope) ColumnLineage {
	var out ColumnLineage
	for _, e := range fc.Args {
		out.merge(a.expr(e, lvl))
	}
	schema, name := funcName(fc)
	if schema != "" && schema != "pg_catalog" || !safeFuncs[name] {
		out.Opaque = true
	}
	return out
}

// colName is the output column name PostgreSQL gives a target (FigureColname); it
// only needs to be right for harmless lookups: a name not found falls back to
// "anything visible".
func colName(rt *pg.ResTarget) string {
	if rt.Name != "" {
		return rt.Name
	}
	return figure(rt.Val)
}

func figure(n *pg.Node) string {
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		f := x.ColumnRef.Fields
		if len(f) > 0 {
			if s := str(f[len(f)-1]); s != "" {
				return s
			}
		}
	case *pg.Node_AIndirection:
		ind := x.AIndirection.Indirection
		if len(ind) > 0 {
			if s := str(ind[len(ind)-1]); s != "" {
				return s
			}
		}
		return figure(x.AIndirection.Arg)
	case *pg.Node_FuncCall:
		_, name := funcName(x.FuncCall)
		return name
	case *pg.Node_TypeCast:
		if s := figure(x.TypeCast.Arg); s != "?column?" {
			return s
		}
		if tn := x.TypeCast.TypeName; tn != nil && len(tn.Names) > 0 {
			return str(tn.Names[len(tn.Names)-1])
		}
	case *pg.Node_CaseExpr:
		return "case"
	case *pg.Node_CoalesceExpr:
		return "coalesce"
	case *pg.Node_RowExpr:
		return "row"
	case *pg.Node_AArrayExpr:
		return "array"
	case *pg.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists"
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array"
		case pg.SubLinkType_EXPR_SUBLINK:
			if s := x.SubLink.Subselect.GetSelectStmt(); s != nil && len(s.TargetList) == 1 {
				if rt := s.TargetList[0].GetResTarget(); rt != nil {
					return colName(rt)
				}
			}
		}
	}
	return "?column?"
}

// dml analyses INSERT/UPDATE/DELETE/MERGE. returning is false without RETURNING.
// Every returned column also carries the lineage of the values written, since
// RETURNING shows them.
func (a *analyzer) dml(n *pg.Node, parent *scope) (cols []ColumnLineage, names []string, returning bool) {
	sc := parent
	lvl := &scope{}
	var written ColumnLineage
	var list []*pg.Node
	switch x := n.GetNode().(type) {
	case *pg.Node_InsertStmt:
		s := x.InsertStmt
		if s.WithClause != nil {
			sc = a.with(s.WithClause, parent)
		}
		lvl.parent = sc
		if s.SelectStmt != nil {
			vals, _ := a.query(s.SelectStmt, sc)
			for _, c := range vals {
				written.merge(c)
			}
		}
		if s.Relation != nil {
			a.rangeVar(s.Relation, lvl)
		}
		lvl.items = append(lvl.items, item{name: "excluded", src: &source{tail: &written}})
		if s.OnConflictClause != nil {
			written.merge(a.generic(&pg.Node{Node: &pg.Node_OnConflictClause{OnConflictClause: s.OnConflictClause}}, lvl))
		}
		list = s.ReturningList
	case *pg.Node_UpdateStmt:
		s := x.UpdateStmt
		if s.WithClause != nil {
			sc = a.with(s.WithClause, parent)
		}
		lvl.parent = sc
		if s.Relation != nil {
			a.rangeVar(s.Relation, lvl)
		}
		for _, f := range s.FromClause {
			a.from(f, lvl)
		}
		for _, t := range s.TargetList {
			if rt := t.GetResTarget(); rt != nil {
				written.merge(a.expr(rt.Val, lvl))
			}
		}
		a.reads.merge(a.expr(s.WhereClause, lvl))
		list = s.ReturningList
	case *pg.Node_DeleteStmt:
		s := x.DeleteStmt
		if s.WithClause != nil {
			sc = a.with(s.WithClause, parent)
		}
		lvl.parent = sc
		if s.Relation != nil {
			a.rangeVar(s.Relation, lvl)
		}
		for _, f := range s.UsingClause {
			a.from(f, lvl)
		}
		a.reads.merge(a.expr(s.WhereClause, lvl))
		list = s.ReturningList
	case *pg.Node_MergeStmt:
		s := x.MergeStmt
		if s.WithClause != nil {
			sc = a.with(s.WithClause, parent)
		}
		lvl.parent = sc
		if s.Relation != nil {
			a.rangeVar(s.Relation, lvl)
		}
		if s.SourceRelation != nil {
			a.from(s.SourceRelation, lvl)
		}
		for _, w := range s.MergeWhenClauses {
			written.merge(a.generic(w, lvl))
		}
		a.reads.merge(a.expr(s.JoinCondition, lvl))
		list = s.ReturningList
	default:
		return opaqueStar, nil, true
	}
	a.reads.merge(written)
	if len(list) == 0 {
		return nil, nil, false
	}
	// Only the target relation and FROM/USING items are visible to RETURNING, not
	// the "excluded" pseudo-relation, but over-approximating is harmless.
	cols, names = a.targets(list, lvl)
	if len(written.Refs) > 0 || written.WholeRow || written.Opaque {
		for i := range cols {
			cols[i].merge(written)
			cols[i].Direct = false
		}
	}
	return cols, names, true
}
