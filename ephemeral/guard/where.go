package guard

import (
	"math/big"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// checkWhere records an unsafe write when a DELETE or UPDATE has no WHERE,
// or a WHERE that does not depend on the rows: a constant that folds to true
// (`WHERE 1=1`, `WHERE NOT false`, `WHERE 'a'='a'`), an expression with no
// column in it (`WHERE random() < 2`, `WHERE $1`), an OR with such a branch
// (`WHERE id = 5 OR true`), or a tautology over one column (`WHERE id = id`).
// It is a rule against accidents and lazy bypasses, not a proof: a predicate
// such as `id > -1` still matches every row.
func (a *analyser) checkWhere(kind string, where *pg_query.Node) {
	if where == nil {
		a.unsafe = append(a.unsafe, kind+" without WHERE")
		return
	}
	if !newFolder().rowTargeted(where) {
		a.unsafe = append(a.unsafe, kind+" with a WHERE that does not restrict rows (constant-true, tautological or column-free)")
	}
}

// checkMerge treats a MERGE that can update or delete matched rows like an
// UPDATE/DELETE whose WHERE is the ON condition.
func (a *analyser) checkMerge(n *pg_query.MergeStmt) {
	for _, w := range n.MergeWhenClauses {
		c := w.GetMergeWhenClause()
		if c == nil {
			continue
		}
		if c.CommandType == pg_query.CmdType_CMD_UPDATE || c.CommandType == pg_query.CmdType_CMD_DELETE {
			if n.JoinCondition == nil || !newFolder().rowTargeted(n.JoinCondition) {
				a.unsafe = append(a.unsafe, "MERGE with an ON condition that does not restrict rows (constant-true, tautological or column-free)")
			}
			return
		}
	}
}

// folder evaluates one predicate. Results are memoised per node, so nested
// AND/OR trees cost O(size × depth) rather than exponential time.
type folder struct {
	vals map[*pg_query.Node]cval
	keys map[*pg_query.Node]string
	cols map[*pg_query.Node]bool
}

func newFolder() *folder {
	return &folder{vals: map[*pg_query.Node]cval{}, keys: map[*pg_query.Node]string{}, cols: map[*pg_query.Node]bool{}}
}

// rowTargeted reports whether predicate p selects rows by their columns.
func (f *folder) rowTargeted(p *pg_query.Node) bool {
	if truth(f.fold(p)) == triTrue {
		return false
	}
	if b := p.GetBoolExpr(); b != nil {
		switch b.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			for _, arg := range b.Args {
				if f.rowTargeted(arg) {
					return true
				}
			}
			return false
		case pg_query.BoolExprType_OR_EXPR:
			for _, arg := range b.Args {
				if !f.rowTargeted(arg) {
					return false
				}
			}
			return true
		}
	}
	return f.hasColumn(p)
}

// hasColumn reports whether a column reference (or WHERE CURRENT OF) occurs
// anywhere in n, subqueries included. Memoised per node, so asking about
// every level of a nested predicate costs O(size) in total.
func (f *folder) hasColumn(n *pg_query.Node) bool {
	if n == nil {
		return false
	}
	if v, ok := f.cols[n]; ok {
		return v
	}
	v := f.messageHasColumn(n.ProtoReflect())
	f.cols[n] = v
	return v
}

func (f *folder) messageHasColumn(m protoreflect.Message) bool {
	switch x := m.Interface().(type) {
	case *pg_query.ColumnRef, *pg_query.CurrentOfExpr:
		return true
	case *pg_query.Node:
		if v, ok := f.cols[x]; ok {
			return v
		}
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = f.child(l.Get(i).Message())
			}
		} else {
			found = f.child(v.Message())
		}
		return !found
	})
	return found
}

func (f *folder) child(m protoreflect.Message) bool {
	if n, ok := m.Interface().(*pg_query.Node); ok {
		return f.hasColumn(n)
	}
	return f.messageHasColumn(m)
}

type tri int

const (
	triUnknown tri = iota
	triTrue
	triFalse
	triNull
)

type ckind int

const (
	cUnknown ckind = iota
	cNull
	cBool
	cNum
	cStr // an untyped literal: PostgreSQL coerces it to the other side's type
)

// cval is the value of a constant expression, as far as the guard can fold it.
type cval struct {
	k   ckind
	b   bool
	num *big.Rat
	s   string
}

var unknown = cval{}

func boolVal(b bool) cval { return cval{k: cBool, b: b} }

// truth reads a folded value as a WHERE condition.
func truth(v cval) tri {
	switch v.k {
	case cNull:
		return triNull
	case cBool:
		if v.b {
			return triTrue
		}
		return triFalse
	case cStr:
		if b, ok := parseBool(v.s); ok {
			return truth(boolVal(b))
		}
	}
	return triUnknown
}

// parseBool follows PostgreSQL's boolin for the common spellings.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "t", "true", "y", "yes", "on", "1":
		return true, true
	case "f", "false", "n", "no", "off", "0":
		return false, true
	}
	return false, false
}

// fold evaluates constant parts of an expression.
func (f *folder) fold(n *pg_query.Node) cval {
	if n == nil {
		return unknown
	}
	if v, ok := f.vals[n]; ok {
		return v
	}
	v := f.foldNode(n)
	f.vals[n] = v
	return v
}

func (f *folder) foldNode(n *pg_query.Node) cval {
	switch {
	case n.GetAConst() != nil:
		c := n.GetAConst()
		switch {
		case c.Isnull:
			return cval{k: cNull}
		case c.GetBoolval() != nil:
			return boolVal(c.GetBoolval().Boolval)
		case c.GetIval() != nil:
			return cval{k: cNum, num: new(big.Rat).SetInt64(int64(c.GetIval().Ival))}
		case c.GetFval() != nil:
			if r, ok := parseRat(c.GetFval().Fval); ok {
				return cval{k: cNum, num: r}
			}
		case c.GetSval() != nil:
			return cval{k: cStr, s: c.GetSval().Sval}
		}
		return unknown
	case n.GetTypeCast() != nil:
		return f.foldCast(n.GetTypeCast())
	case n.GetBoolExpr() != nil:
		return f.foldBool(n.GetBoolExpr())
	case n.GetAExpr() != nil:
		return f.foldAExpr(n.GetAExpr())
	case n.GetNullTest() != nil:
		t := n.GetNullTest()
		v := f.fold(t.Arg)
		isNull := v.k == cNull
		if v.k == cUnknown {
			return unknown
		}
		return boolVal(isNull == (t.Nulltesttype == pg_query.NullTestType_IS_NULL))
	case n.GetBooleanTest() != nil:
		t := n.GetBooleanTest()
		v := truth(f.fold(t.Arg))
		if v == triUnknown {
			return unknown
		}
		switch t.Booltesttype {
		case pg_query.BoolTestType_IS_TRUE:
			return boolVal(v == triTrue)
		case pg_query.BoolTestType_IS_NOT_TRUE:
			return boolVal(v != triTrue)
		case pg_query.BoolTestType_IS_FALSE:
			return boolVal(v == triFalse)
		case pg_query.BoolTestType_IS_NOT_FALSE:
			return boolVal(v != triFalse)
		case pg_query.BoolTestType_IS_UNKNOWN:
			return boolVal(v == triNull)
		case pg_query.BoolTestType_IS_NOT_UNKNOWN:
			return boolVal(v != triNull)
		}
		return unknown
	case n.GetCoalesceExpr() != nil:
		for _, arg := range n.GetCoalesceExpr().Args {
			v := f.fold(arg)
			if v.k != cNull {
				return v
			}
		}
		return cval{k: cNull}
	case n.GetCaseExpr() != nil:
		c := n.GetCaseExpr()
		if c.Arg != nil {
			return unknown
		}
		for _, w := range c.Args {
			cw := w.GetCaseWhen()
			if cw == nil {
				return unknown
			}
			switch truth(f.fold(cw.Expr)) {
			case triTrue:
				return f.fold(cw.Result)
			case triUnknown:
				return unknown
			}
		}
		if c.Defresult == nil {
			return cval{k: cNull}
		}
		return f.fold(c.Defresult)
	}
	return unknown
}

func (f *folder) foldCast(c *pg_query.TypeCast) cval {
	v := f.fold(c.Arg)
	if v.k == cUnknown || v.k == cNull || c.TypeName == nil || len(c.TypeName.Names) == 0 {
		return v
	}
	_, typ := funcName(c.TypeName.Names)
	switch strings.ToLower(typ) {
	case "bool", "boolean":
		switch v.k {
		case cBool:
			return v
		case cStr:
			if b, ok := parseBool(v.s); ok {
				return boolVal(b)
			}
		case cNum:
			if v.num.IsInt() {
				return boolVal(v.num.Sign() != 0)
			}
		}
	case "int2", "int4", "int8", "integer", "smallint", "bigint", "numeric", "float4", "float8", "decimal":
		switch v.k {
		case cNum:
			return v
		case cStr:
			if r, ok := parseRat(v.s); ok {
				return cval{k: cNum, num: r}
			}
		}
	case "text", "varchar", "bpchar", "name":
		switch v.k {
		case cStr:
			return v
		case cNum:
			return cval{k: cStr, s: v.num.RatString()}
		}
	}
	return unknown
}

func (f *folder) foldBool(b *pg_query.BoolExpr) cval {
	switch b.Boolop {
	case pg_query.BoolExprType_NOT_EXPR:
		if len(b.Args) != 1 {
			return unknown
		}
		switch truth(f.fold(b.Args[0])) {
		case triTrue:
			return boolVal(false)
		case triFalse:
			return boolVal(true)
		case triNull:
			return cval{k: cNull}
		}
		return unknown
	case pg_query.BoolExprType_AND_EXPR:
		all, sawNull := true, false
		for _, arg := range b.Args {
			switch truth(f.fold(arg)) {
			case triFalse:
				return boolVal(false)
			case triNull:
				sawNull = true
			case triUnknown:
				all = false
			}
		}
		if !all {
			return unknown
		}
		if sawNull {
			return cval{k: cNull}
		}
		return boolVal(true)
	case pg_query.BoolExprType_OR_EXPR:
		all, sawNull := true, false
		for _, arg := range b.Args {
			switch truth(f.fold(arg)) {
			case triTrue:
				return boolVal(true)
			case triNull:
				sawNull = true
			case triUnknown:
				all = false
			}
		}
		if f.complementary(b.Args) {
			return boolVal(true)
		}
		if !all {
			return unknown
		}
		if sawNull {
			return cval{k: cNull}
		}
		return boolVal(false)
	}
	return unknown
}

// complementary finds `p OR NOT p` and `x IS NULL OR x IS NOT NULL` among OR
// arms: true for every row (p's NULL rows aside).
func (f *folder) complementary(args []*pg_query.Node) bool {
	pos := map[string]bool{}
	neg := map[string]bool{}
	for _, arg := range args {
		switch {
		case arg.GetBoolExpr() != nil && arg.GetBoolExpr().Boolop == pg_query.BoolExprType_NOT_EXPR && len(arg.GetBoolExpr().Args) == 1:
			if k := f.exprKey(arg.GetBoolExpr().Args[0]); k != "" {
				neg[k] = true
			}
		case arg.GetNullTest() != nil:
			t := arg.GetNullTest()
			k := f.exprKey(t.Arg)
			if k == "" {
				continue
			}
			k = "nulltest:" + k
			if t.Nulltesttype == pg_query.NullTestType_IS_NULL {
				pos[k] = true
			} else {
				neg[k] = true
			}
		default:
			if k := f.exprKey(arg); k != "" {
				pos[k] = true
			}
		}
	}
	for k := range pos {
		if neg[k] {
			return true
		}
	}
	return false
}

// sameExpr reports whether a and b are the same (small) expression.
func (f *folder) sameExpr(a, b *pg_query.Node) bool {
	ka := f.exprKey(a)
	return ka != "" && ka == f.exprKey(b)
}

// exprKey is the memoised exprKey.
func (f *folder) exprKey(n *pg_query.Node) string {
	if k, ok := f.keys[n]; ok {
		return k
	}
	k := exprKey(n)
	f.keys[n] = k
	return k
}

// maxKeyNodes bounds the expressions exprKey compares: tautologies worth
// catching are small, and a bound keeps deep predicates linear.
const maxKeyNodes = 64

// exprKey is a canonical encoding of an expression, locations cleared, so
// two spellings of the same expression compare equal. It is "" (never
// equal to anything) for nil and for expressions over maxKeyNodes nodes.
func exprKey(n *pg_query.Node) string {
	if n == nil {
		return ""
	}
	budget := maxKeyNodes
	if !withinNodes(n.ProtoReflect(), &budget) {
		return ""
	}
	c := proto.Clone(n)
	clearLocations(c.ProtoReflect())
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return ""
	}
	return string(b)
}

// withinNodes reports whether m has at most *budget messages, spending it.
func withinNodes(m protoreflect.Message, budget *int) bool {
	*budget--
	if *budget < 0 {
		return false
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && ok; i++ {
				ok = withinNodes(l.Get(i).Message(), budget)
			}
		} else {
			ok = withinNodes(v.Message(), budget)
		}
		return ok
	})
	return ok
}

func clearLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.Int32Kind && strings.HasSuffix(string(fd.Name()), "location"):
			m.Clear(fd)
		case fd.Message() != nil && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearLocations(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			clearLocations(v.Message())
		}
		return true
	})
}

func opName(e *pg_query.A_Expr) string {
	if len(e.Name) != 1 || e.Name[0].GetString_() == nil {
		return ""
	}
	return e.Name[0].GetString_().Sval
}

func (f *folder) foldAExpr(e *pg_query.A_Expr) cval {
	op := opName(e)
	switch e.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if e.Lexpr != nil && e.Rexpr != nil && f.hasColumn(e.Lexpr) && f.sameExpr(e.Lexpr, e.Rexpr) {
			switch op {
			case "=", "<=", ">=":
				return boolVal(true) // x = x: every non-NULL row
			case "<>", "!=", "<", ">":
				return boolVal(false)
			}
		}
		return compare(op, f.fold(e.Lexpr), f.fold(e.Rexpr))
	case pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg_query.A_Expr_Kind_AEXPR_DISTINCT:
		same := e.Kind == pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT
		if e.Lexpr != nil && e.Rexpr != nil && f.sameExpr(e.Lexpr, e.Rexpr) {
			return boolVal(same)
		}
		l, r := f.fold(e.Lexpr), f.fold(e.Rexpr)
		if l.k == cNull && r.k == cNull {
			return boolVal(same)
		}
		if l.k == cNull || r.k == cNull {
			if l.k == cUnknown || r.k == cUnknown {
				return unknown
			}
			return boolVal(!same)
		}
		v := compare("=", l, r)
		if v.k != cBool {
			return unknown
		}
		return boolVal(v.b == same)
	case pg_query.A_Expr_Kind_AEXPR_IN:
		l := f.fold(e.Lexpr)
		list := e.Rexpr.GetList()
		if list == nil {
			return unknown
		}
		in := op == "="
		anyUnknown := false
		for _, item := range list.Items {
			v := compare("=", l, f.fold(item))
			if v.k == cBool && v.b {
				return boolVal(in)
			}
			if v.k != cBool {
				anyUnknown = true
			}
		}
		if anyUnknown {
			return unknown
		}
		return boolVal(!in)
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		list := e.Rexpr.GetList()
		if list == nil || len(list.Items) != 2 {
			return unknown
		}
		x := f.fold(e.Lexpr)
		lo, hi := compare(">=", x, f.fold(list.Items[0])), compare("<=", x, f.fold(list.Items[1]))
		if lo.k != cBool || hi.k != cBool {
			return unknown
		}
		in := lo.b && hi.b
		if e.Kind == pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN {
			in = !in
		}
		return boolVal(in)
	}
	return unknown
}

// compare folds a comparison of two constants the way PostgreSQL coerces an
// untyped literal to the other side's type.
func compare(op string, l, r cval) cval {
	if l.k == cUnknown || r.k == cUnknown {
		return unknown
	}
	if l.k == cNull || r.k == cNull {
		return cval{k: cNull}
	}
	var c int
	switch {
	case l.k == cNum || r.k == cNum:
		ln, ok1 := asNum(l)
		rn, ok2 := asNum(r)
		if !ok1 || !ok2 {
			return unknown
		}
		c = ln.Cmp(rn)
	case l.k == cBool || r.k == cBool:
		lb, ok1 := asBool(l)
		rb, ok2 := asBool(r)
		if !ok1 || !ok2 {
			return unknown
		}
		c = boolCmp(lb, rb)
	default: // two strings: only equality is collation-independent
		if op != "=" && op != "<>" && op != "!=" {
			return unknown
		}
		c = strings.Compare(l.s, r.s)
	}
	switch op {
	case "=":
		return boolVal(c == 0)
	case "<>", "!=":
		return boolVal(c != 0)
	case "<":
		return boolVal(c < 0)
	case ">":
		return boolVal(c > 0)
	case "<=":
		return boolVal(c <= 0)
	case ">=":
		return boolVal(c >= 0)
	}
	return unknown
}

func asNum(v cval) (*big.Rat, bool) {
	switch v.k {
	case cNum:
		return v.num, true
	case cStr:
		return parseRat(v.s)
	}
	return nil, false
}

// parseRat parses a numeric literal, refusing huge ones (1e999999999 would
// make big.Rat allocate without bound).
func parseRat(s string) (*big.Rat, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 64 {
		return nil, false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp := strings.TrimLeft(s[i+1:], "+-")
		if len(exp) > 3 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(s)
}

func asBool(v cval) (bool, bool) {
	switch v.k {
	case cBool:
		return v.b, true
	case cStr:
		return parseBool(v.s)
	}
	return false, false
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
