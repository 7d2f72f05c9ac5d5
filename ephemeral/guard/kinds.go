package guard

import (
	"strings"
	"unicode"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

const reasonReads = "reads data"

// topLevel names a statement and records what its kind alone means. Nested
// nodes (functions, CTEs, subqueries) are judged by walk.
func (a *analyser) topLevel(m proto.Message) string {
	switch n := m.(type) {
	case *pg_query.SelectStmt:
		switch {
		case n.IntoClause != nil:
			return "SELECT INTO" // walk adds the admin finding
		case len(n.ValuesLists) > 0:
			a.add(ClassRead, reasonReads, "VALUES")
			return "VALUES"
		}
		a.add(ClassRead, reasonReads, "SELECT")
		return "SELECT"
	case *pg_query.InsertStmt:
		return "INSERT"
	case *pg_query.UpdateStmt:
		return "UPDATE"
	case *pg_query.DeleteStmt:
		return "DELETE"
	case *pg_query.MergeStmt:
		return "MERGE"
	case *pg_query.CopyStmt:
		switch {
		case n.IsProgram:
			a.add(ClassForbidden, "COPY ... PROGRAM runs a shell command on the database server", "COPY PROGRAM")
		case n.Filename != "":
			a.add(ClassForbidden, "COPY with a file name reads or writes files on the database server", "COPY FILE")
		case n.IsFrom:
			a.add(ClassWrite, "COPY FROM STDIN loads data", "COPY")
		default:
			a.add(ClassRead, "COPY TO STDOUT reads data", "COPY")
		}
		return "COPY"
	case *pg_query.VariableSetStmt:
		return a.setStmt(n)
	case *pg_query.VariableShowStmt:
		a.add(ClassRead, "shows a setting", "SHOW")
		return "SHOW"
	case *pg_query.TransactionStmt:
		return a.transaction(n)
	case *pg_query.ExplainStmt:
		if explainAnalyze(n.Options) {
			a.add(ClassRead, "EXPLAIN ANALYZE runs the statement it explains", "EXPLAIN")
		} else {
			a.add(ClassRead, "EXPLAIN without ANALYZE only plans the statement", "EXPLAIN")
		}
		return "EXPLAIN"
	case *pg_query.PrepareStmt:
		a.add(ClassRead, "PREPARE is judged by the statement it prepares", "PREPARE")
		return "PREPARE"
	case *pg_query.ExecuteStmt:
		a.add(ClassRead, "EXECUTE is judged by the prepared statement", "EXECUTE")
		return "EXECUTE"
	case *pg_query.DeallocateStmt:
		a.res.eff, a.res.name, a.res.all = effDeallocate, n.Name, n.Isall || n.Name == ""
		a.add(ClassRead, "forgets a prepared statement", "DEALLOCATE")
		return "DEALLOCATE"
	case *pg_query.DeclareCursorStmt:
		a.add(ClassRead, "DECLARE CURSOR is judged by its query", "DECLARE CURSOR")
		return "DECLARE CURSOR"
	case *pg_query.FetchStmt:
		a.res.hasFetch, a.res.fetchName = true, n.Portalname
		if n.Ismove {
			a.add(ClassRead, "moves a cursor", "MOVE")
			return "MOVE"
		}
		a.add(ClassRead, "reads from a cursor", "FETCH")
		return "FETCH"
	case *pg_query.ClosePortalStmt:
		a.res.eff, a.res.name, a.res.all = effClose, n.Portalname, n.Portalname == ""
		a.add(ClassRead, "closes a cursor", "CLOSE")
		return "CLOSE"
	case *pg_query.DiscardStmt:
		if n.Target == pg_query.DiscardMode_DISCARD_ALL {
			a.res.eff = effDiscardAll
		}
		a.add(ClassRead, "discards session state back to its start", "DISCARD")
		return "DISCARD"
	case *pg_query.LockStmt:
		a.add(ClassWrite, "LOCK takes table locks", "LOCK")
		return "LOCK"
	case *pg_query.NotifyStmt:
		a.add(ClassAdmin, "NOTIFY signals other sessions", "NOTIFY")
		return "NOTIFY"
	case *pg_query.ListenStmt:
		a.add(ClassAdmin, "LISTEN receives other sessions' notifications", "LISTEN")
		return "LISTEN"
	case *pg_query.UnlistenStmt:
		a.add(ClassAdmin, "UNLISTEN changes notification subscriptions", "UNLISTEN")
		return "UNLISTEN"
	case *pg_query.DoStmt:
		a.add(ClassAdmin, "DO runs procedural code", "DO")
		lang, src := "plpgsql", ""
		for _, arg := range n.Args {
			if d := arg.GetDefElem(); d != nil && d.Arg != nil && d.Arg.GetString_() != nil {
				switch d.Defname {
				case "as":
					src = d.Arg.GetString_().Sval
				case "language":
					lang = d.Arg.GetString_().Sval
				}
			}
		}
		a.analyseBody(lang, src, "")
		return "DO"
	case *pg_query.CreateFunctionStmt:
		kind := "CREATE FUNCTION"
		if n.IsProcedure {
			kind = "CREATE PROCEDURE"
		}
		a.add(ClassAdmin, "defines code that runs later", kind)
		lang, src, hasSrc := "", "", false
		for _, o := range n.Options {
			d := o.GetDefElem()
			if d == nil || d.Arg == nil {
				continue
			}
			switch d.Defname {
			case "security":
				if v, ok := constString(d.Arg); !ok || !isFalseLiteral(v) {
					a.add(ClassAdmin, "SECURITY DEFINER code runs with its owner's privileges", kind)
				}
			case "language":
				if s := d.Arg.GetString_(); s != nil {
					lang = s.Sval
				}
			case "as":
				if l := d.Arg.GetList(); l != nil && len(l.Items) > 0 && l.Items[0].GetString_() != nil {
					src, hasSrc = l.Items[0].GetString_().Sval, true
				}
			}
		}
		switch {
		case n.SqlBody != nil: // BEGIN ATOMIC / RETURN: walked as part of the tree
		case hasSrc && lang != "":
			a.analyseBody(lang, src, a.text)
		default:
			a.add(ClassAdmin, "its body cannot be analysed", "")
		}
		return kind
	case *pg_query.CallStmt:
		a.add(ClassAdmin, "CALL runs a procedure whose body the guard cannot see", "CALL")
		return "CALL"
	case *pg_query.VacuumStmt:
		kind := "ANALYZE"
		if n.IsVacuumcmd {
			kind = "VACUUM"
		}
		a.add(ClassAdmin, "runs server maintenance", kind)
		return kind
	case *pg_query.ReindexStmt, *pg_query.ClusterStmt, *pg_query.CheckPointStmt, *pg_query.RefreshMatViewStmt:
		kind := kindName(m)
		a.add(ClassAdmin, "runs server maintenance", kind)
		return kind
	case *pg_query.CreateExtensionStmt:
		a.add(ClassForbidden, "loads extension code into the server", "CREATE EXTENSION")
		return "CREATE EXTENSION"
	case *pg_query.AlterSystemStmt:
		a.add(ClassForbidden, "ALTER SYSTEM rewrites the server configuration", "ALTER SYSTEM")
		return "ALTER SYSTEM"
	case *pg_query.LoadStmt:
		a.add(ClassForbidden, "LOAD loads a shared library into the server", "LOAD")
		return "LOAD"
	case *pg_query.CreateForeignServerStmt, *pg_query.AlterForeignServerStmt, *pg_query.CreateUserMappingStmt,
		*pg_query.AlterUserMappingStmt, *pg_query.CreateFdwStmt, *pg_query.AlterFdwStmt,
		*pg_query.CreateSubscriptionStmt, *pg_query.AlterSubscriptionStmt:
		kind := kindName(m)
		a.add(ClassForbidden, "defines a connection to a server that bypasses the proxy (postgres_fdw/dblink loopback)", kind)
		return kind
	case *pg_query.CreateTableAsStmt:
		kind := "CREATE TABLE AS"
		reason := "creates a table from a query"
		if n.Objtype == pg_query.ObjectType_OBJECT_MATVIEW {
			kind, reason = "CREATE MATERIALIZED VIEW", "creates a materialized view"
		}
		a.add(ClassAdmin, reason, kind)
		return kind
	case *pg_query.RuleStmt:
		a.add(ClassAdmin, "defines a rule that fires on other statements", "CREATE RULE")
		return "CREATE RULE"
	case *pg_query.CreateTrigStmt:
		a.add(ClassAdmin, "defines a trigger that fires on other statements", "CREATE TRIGGER")
		return "CREATE TRIGGER"
	case *pg_query.CreateEventTrigStmt:
		a.add(ClassAdmin, "defines an event trigger that fires on DDL", "CREATE EVENT TRIGGER")
		return "CREATE EVENT TRIGGER"
	case *pg_query.TruncateStmt:
		a.add(ClassAdmin, "TRUNCATE removes all rows", "TRUNCATE")
		return "TRUNCATE"
	case *pg_query.GrantStmt:
		kind := "REVOKE"
		if n.IsGrant {
			kind = "GRANT"
		}
		a.add(ClassAdmin, "changes privileges", kind)
		return kind
	case *pg_query.GrantRoleStmt:
		kind := "REVOKE"
		if n.IsGrant {
			kind = "GRANT"
		}
		a.add(ClassAdmin, "changes role membership", kind)
		return kind
	case *pg_query.DropStmt:
		kind := "DROP " + objectTypeName(n.RemoveType)
		for _, o := range n.Objects {
			if l := o.GetList(); l != nil && isRelationType(n.RemoveType) {
				var parts []string
				for _, it := range l.Items {
					if s := it.GetString_(); s != nil {
						parts = append(parts, s.Sval)
					}
				}
				a.tables = append(a.tables, strings.Join(parts, "."))
				a.quals = append(a.quals, true)
			}
		}
		a.add(ClassAdmin, "changes the schema", kind)
		return kind
	case *pg_query.AlterTableStmt:
		kind := "ALTER " + objectTypeName(n.Objtype)
		a.add(ClassAdmin, "changes the schema", kind)
		return kind
	case *pg_query.CreateStmt:
		a.add(ClassAdmin, "changes the schema", "CREATE TABLE")
		return "CREATE TABLE"
	case *pg_query.IndexStmt:
		a.add(ClassAdmin, "changes the schema", "CREATE INDEX")
		return "CREATE INDEX"
	case *pg_query.ViewStmt:
		a.add(ClassAdmin, "changes the schema", "CREATE VIEW")
		return "CREATE VIEW"
	case *pg_query.CreateSeqStmt:
		a.add(ClassAdmin, "changes the schema", "CREATE SEQUENCE")
		return "CREATE SEQUENCE"
	case *pg_query.CreateSchemaStmt:
		a.add(ClassAdmin, "changes the schema", "CREATE SCHEMA")
		return "CREATE SCHEMA"
	case *pg_query.CommentStmt:
		a.add(ClassAdmin, "changes the schema", "COMMENT")
		return "COMMENT"
	}
	// Every other statement is a utility or DDL statement: admin. New
	// PostgreSQL statement types therefore fail closed to admin.
	kind := kindName(m)
	a.add(ClassAdmin, "DDL or utility statement", kind)
	return kind
}

// setStmt judges SET, SET LOCAL, SET TRANSACTION and RESET.
func (a *analyser) setStmt(n *pg_query.VariableSetStmt) string {
	kind := "SET"
	mode := modeValue
	switch n.Kind {
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		a.add(ClassForbidden, "RESET ALL resets every setting, including the session's read-only state", "RESET ALL")
		return "RESET"
	case pg_query.VariableSetKind_VAR_RESET:
		kind, mode = "RESET", modeDefault
	case pg_query.VariableSetKind_VAR_SET_DEFAULT:
		mode = modeDefault
	case pg_query.VariableSetKind_VAR_SET_CURRENT:
		mode = modeCurrent
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		return a.setMulti(n)
	case pg_query.VariableSetKind_VAR_SET_VALUE:
	default:
		a.add(ClassForbidden, "unrecognised SET form", "")
		return kind
	}
	vals := make([]string, 0, len(n.Args))
	ok := true
	for _, arg := range n.Args {
		v, good := constString(arg)
		ok = ok && good
		vals = append(vals, v)
	}
	name := strings.ToLower(n.Name)
	v := judgeSetting(name, mode, vals, ok)
	key := ""
	if v.class == ClassForbidden {
		key = kind + " " + name
	}
	a.add(v.class, kind+" "+name+" "+v.reason, key)
	return kind
}

// setMulti judges SET TRANSACTION / SET SESSION CHARACTERISTICS.
func (a *analyser) setMulti(n *pg_query.VariableSetStmt) string {
	readWrite := false
	for _, arg := range n.Args {
		if d := arg.GetDefElem(); d != nil && d.Defname == "transaction_read_only" && d.Arg != nil {
			if v, ok := constString(d.Arg); !ok || !isTrueLiteral(v) {
				readWrite = true
			}
		}
	}
	switch strings.ToUpper(n.Name) {
	case "TRANSACTION":
		if readWrite {
			a.add(ClassWrite, "SET TRANSACTION READ WRITE makes the transaction writable", "SET TRANSACTION READ WRITE")
		} else {
			a.add(ClassRead, "sets transaction characteristics", "SET TRANSACTION")
		}
	case "SESSION CHARACTERISTICS":
		if readWrite {
			a.add(ClassForbidden, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE turns default_transaction_read_only off", "SET SESSION CHARACTERISTICS")
		} else {
			a.add(ClassRead, "sets session transaction characteristics", "SET SESSION CHARACTERISTICS")
		}
	case "TRANSACTION SNAPSHOT":
		a.add(ClassRead, "imports a snapshot", "SET TRANSACTION SNAPSHOT")
	default:
		a.add(ClassForbidden, "unrecognised SET "+n.Name, "")
	}
	return "SET"
}

// transaction judges BEGIN, COMMIT, SAVEPOINT and two-phase commit.
func (a *analyser) transaction(n *pg_query.TransactionStmt) string {
	switch n.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		kind := "BEGIN"
		if n.Kind == pg_query.TransactionStmtKind_TRANS_STMT_START {
			kind = "START TRANSACTION"
		}
		for _, o := range n.Options {
			if d := o.GetDefElem(); d != nil && d.Defname == "transaction_read_only" && d.Arg != nil {
				if v, ok := constString(d.Arg); !ok || !isTrueLiteral(v) {
					a.add(ClassWrite, kind+" READ WRITE starts a writable transaction", kind+" READ WRITE")
					return kind
				}
			}
		}
		a.add(ClassRead, "transaction control", kind)
		return kind
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		a.add(ClassRead, "transaction control", "COMMIT")
		return "COMMIT"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		a.add(ClassRead, "transaction control", "ROLLBACK")
		return "ROLLBACK"
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		a.add(ClassRead, "transaction control", "SAVEPOINT")
		return "SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		a.add(ClassRead, "transaction control", "RELEASE")
		return "RELEASE"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		a.add(ClassRead, "transaction control", "ROLLBACK TO SAVEPOINT")
		return "ROLLBACK TO SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		a.add(ClassAdmin, "PREPARE TRANSACTION keeps a transaction and its locks after the session", "PREPARE TRANSACTION")
		return "PREPARE TRANSACTION"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		a.add(ClassAdmin, "acts on a prepared transaction", "COMMIT PREPARED")
		return "COMMIT PREPARED"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		a.add(ClassAdmin, "acts on a prepared transaction", "ROLLBACK PREPARED")
		return "ROLLBACK PREPARED"
	}
	a.add(ClassForbidden, "unrecognised transaction statement", "")
	return "TRANSACTION"
}

var kindNames = map[string]string{
	"ReindexStmt": "REINDEX", "ClusterStmt": "CLUSTER", "CheckPointStmt": "CHECKPOINT",
	"RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW", "CreateForeignServerStmt": "CREATE SERVER",
	"AlterForeignServerStmt": "ALTER SERVER", "CreateUserMappingStmt": "CREATE USER MAPPING",
	"AlterUserMappingStmt": "ALTER USER MAPPING", "DropUserMappingStmt": "DROP USER MAPPING",
	"CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER", "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
	"CreateSubscriptionStmt": "CREATE SUBSCRIPTION", "AlterSubscriptionStmt": "ALTER SUBSCRIPTION",
	"DropSubscriptionStmt": "DROP SUBSCRIPTION", "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
	"ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA", "CreateRoleStmt": "CREATE ROLE",
	"AlterRoleStmt": "ALTER ROLE", "AlterRoleSetStmt": "ALTER ROLE SET", "DropRoleStmt": "DROP ROLE",
	"AlterDatabaseSetStmt": "ALTER DATABASE SET", "AlterDatabaseStmt": "ALTER DATABASE",
	"CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE", "RenameStmt": "ALTER RENAME",
	"CreateSeqStmt": "CREATE SEQUENCE", "AlterSeqStmt": "ALTER SEQUENCE", "CreateDomainStmt": "CREATE DOMAIN",
	"CompositeTypeStmt": "CREATE TYPE", "CreateEnumStmt": "CREATE TYPE", "CreateRangeStmt": "CREATE TYPE",
	"DefineStmt": "CREATE", "AlterFunctionStmt": "ALTER FUNCTION", "AlterOwnerStmt": "ALTER OWNER",
	"AlterObjectSchemaStmt": "ALTER SET SCHEMA", "CreatePublicationStmt": "CREATE PUBLICATION",
	"AlterPublicationStmt": "ALTER PUBLICATION", "SecLabelStmt": "SECURITY LABEL",
	"AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES", "ReassignOwnedStmt": "REASSIGN OWNED",
	"DropOwnedStmt": "DROP OWNED", "CreatePolicyStmt": "CREATE POLICY", "AlterPolicyStmt": "ALTER POLICY",
	"CreateTableSpaceStmt": "CREATE TABLESPACE", "DropTableSpaceStmt": "DROP TABLESPACE",
	"AlterExtensionStmt": "ALTER EXTENSION", "AlterExtensionContentsStmt": "ALTER EXTENSION",
	"CreateCastStmt": "CREATE CAST", "CreateConversionStmt": "CREATE CONVERSION",
	"CreateOpClassStmt": "CREATE OPERATOR CLASS", "CreatePLangStmt": "CREATE LANGUAGE",
	"CreateStatsStmt": "CREATE STATISTICS", "CreateTransformStmt": "CREATE TRANSFORM",
	"CreateAmStmt": "CREATE ACCESS METHOD", "AlterEnumStmt": "ALTER TYPE",
}

// kindName names a statement node for which there is no specific rule.
func kindName(m proto.Message) string {
	t := string(m.ProtoReflect().Descriptor().Name())
	if k, ok := kindNames[t]; ok {
		return k
	}
	t = strings.TrimSuffix(t, "Stmt")
	var b strings.Builder
	for i, r := range t {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func objectTypeName(t pg_query.ObjectType) string {
	s := strings.TrimPrefix(t.String(), "OBJECT_")
	switch s {
	case "MATVIEW":
		return "MATERIALIZED VIEW"
	case "FOREIGN_TABLE":
		return "FOREIGN TABLE"
	}
	return strings.ReplaceAll(s, "_", " ")
}

func isRelationType(t pg_query.ObjectType) bool {
	switch t {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
		pg_query.ObjectType_OBJECT_SEQUENCE, pg_query.ObjectType_OBJECT_FOREIGN_TABLE, pg_query.ObjectType_OBJECT_INDEX:
		return true
	}
	return false
}
