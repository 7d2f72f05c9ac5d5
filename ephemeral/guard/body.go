package guard

import (
	"encoding/json"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Procedural bodies (DO blocks, CREATE FUNCTION/PROCEDURE AS '...') are
// strings to PostgreSQL's grammar. The guard parses SQL and PL/pgSQL bodies
// too, so a dangerous function called in a body is forbidden like anywhere
// else and an approver sees what the body does. Dynamic SQL (EXECUTE of a
// string) stays opaque and is named in the reasons; bodies in other
// languages cannot be read and are named too. The statements are admin in
// any case; C and internal functions are forbidden because they can bind any
// server function (pg_read_file under another name).

// analyseBody judges the body of a DO block or a function. createText, when
// set, is a CREATE FUNCTION statement that has an AS clause: pg_query's
// PL/pgSQL parser aborts the process on one without.
func (a *analyser) analyseBody(language, src, createText string) {
	lang := strings.ToLower(language)
	if a.depth >= maxBodyDepth && (lang == "sql" || lang == "plpgsql") {
		a.add(ClassAdmin, "its body is nested too deep to analyse", "")
		return
	}
	switch lang {
	case "sql":
		a.bodySQL(src)
	case "plpgsql":
		text := createText
		if text == "" {
			text = "CREATE FUNCTION jitgate_guard_do() RETURNS void LANGUAGE plpgsql AS " + dollarQuote(src)
		}
		a.bodyPLpgSQL(text)
	case "c", "internal":
		a.add(ClassForbidden, "a function in language "+lang+" can bind any server function (pg_read_file under another name)", "CREATE FUNCTION LANGUAGE "+strings.ToUpper(lang))
	default:
		a.add(ClassAdmin, "its body is in language "+language+", which the guard cannot read", "")
	}
}

func (a *analyser) bodySQL(src string) {
	stmts, err := analyseAt(src, a.rules, a.depth+1)
	if err != nil {
		a.add(ClassAdmin, "its SQL body cannot be analysed", "")
		return
	}
	for _, st := range stmts {
		a.mergeBody(st)
	}
}

func (a *analyser) bodyPLpgSQL(createText string) {
	if !utf8Valid(createText) {
		a.add(ClassAdmin, "its PL/pgSQL body cannot be analysed", "")
		return
	}
	js, err := pg_query.ParsePlPgSqlToJSON(createText)
	if err != nil {
		a.add(ClassAdmin, "its PL/pgSQL body cannot be analysed", "")
		return
	}
	var tree any
	if err := json.Unmarshal([]byte(js), &tree); err != nil {
		a.add(ClassAdmin, "its PL/pgSQL body cannot be analysed", "")
		return
	}
	dynamic := false
	visitJSON(tree, func(key string, v map[string]any) {
		switch key {
		case "PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors":
			dynamic = true
		case "PLpgSQL_stmt_open", "PLpgSQL_stmt_return_query":
			if _, ok := v["dynquery"]; ok {
				dynamic = true
			}
		case "PLpgSQL_expr":
			q, _ := v["query"].(string)
			mode, _ := v["parseMode"].(float64)
			a.bodyExpr(q, int(mode))
		}
	})
	if dynamic {
		a.add(ClassAdmin, "it runs dynamic SQL (EXECUTE of a string) the guard cannot see", "")
	}
}

// bodyExpr analyses one PL/pgSQL expression or statement. parseMode follows
// PostgreSQL's RawParseMode: 0 a statement, 2 an expression, 3-5 an
// assignment "target := expression".
func (a *analyser) bodyExpr(q string, mode int) {
	var sql string
	switch mode {
	case 0:
		sql = q
	case 2:
		sql = "SELECT " + q
	case 3, 4, 5:
		rest, ok := afterAssign(q)
		if !ok {
			a.add(ClassAdmin, "a PL/pgSQL assignment in its body cannot be analysed", "")
			return
		}
		sql = "SELECT " + rest
	default:
		a.add(ClassAdmin, "a PL/pgSQL expression in its body cannot be analysed", "")
		return
	}
	stmts, err := analyseAt(sql, a.rules, a.depth+1)
	if err != nil {
		a.add(ClassAdmin, "a statement in its body cannot be analysed", "")
		return
	}
	for _, st := range stmts {
		a.mergeBody(st)
	}
}

// afterAssign returns the expression of "target := expression" (or "="),
// found with PostgreSQL's scanner, not by matching text.
func afterAssign(q string) (string, bool) {
	scan, err := pg_query.Scan(q)
	if err != nil {
		return "", false
	}
	for _, tok := range scan.Tokens {
		if tok.Token == pg_query.Token_COLON_EQUALS || tok.Token == pg_query.Token_ASCII_61 {
			if int(tok.End) > len(q) {
				return "", false
			}
			return q[tok.End:], true
		}
	}
	return "", false
}

// mergeBody adds what a body statement does to the defining statement.
func (a *analyser) mergeBody(st analysed) {
	for _, f := range st.stateless {
		if f.class == ClassRead {
			continue // "reads data" of a body says nothing an approver needs
		}
		f.reason = "in its body: " + f.reason
		f.key = "" // a body's findings are not waived by the outer kind
		a.findings = append(a.findings, f)
	}
	for _, u := range st.unsafe {
		a.unsafe = append(a.unsafe, "in its body: "+u)
	}
	for _, t := range st.stmt.Tables {
		a.tables = append(a.tables, t)
		a.quals = append(a.quals, true)
	}
}

func visitJSON(n any, f func(key string, v map[string]any)) {
	switch v := n.(type) {
	case map[string]any:
		for k, child := range v {
			if m, ok := child.(map[string]any); ok {
				f(k, m)
			}
			visitJSON(child, f)
		}
	case []any:
		for _, child := range v {
			visitJSON(child, f)
		}
	}
}

// dollarQuote quotes s with a dollar tag that does not occur in it.
func dollarQuote(s string) string {
	tag := "$jg$"
	for i := 0; strings.Contains(s, tag); i++ {
		tag = "$jg" + strings.Repeat("x", i+1) + "$"
	}
	return tag + s + tag
}
