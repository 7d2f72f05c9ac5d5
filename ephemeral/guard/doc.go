// Package guard decides whether a PostgreSQL statement string may run under a
// grant's access level. It sits between the policy and the wire: the broker
// calls it when it decides a request and when it shows an approver what a
// statement does, and the ephemeral proxy (ephemeral/engine/postgres) calls
// the same code on every Query and Parse message, so what was approved is
// exactly what is enforced.
//
// SQL is parsed with PostgreSQL's own parser (pganalyze/pg_query_go), never
// matched with regular expressions. Whatever cannot be parsed, is empty, is
// not valid UTF-8 or contains a NUL byte is refused. Each statement of a
// multi-statement string is classified; the string is judged by its strictest
// statement. Keywords inside string literals, E'...' and dollar-quoted strings,
// comments (nested too) and quoted identifiers are data to the parser, so they
// never cause a false positive, and a `;` inside them never splits a statement.
//
// # Classes
//
// ClassRead: SELECT, VALUES, TABLE, SHOW, EXPLAIN without ANALYZE, COPY TO
// STDOUT, BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE, DECLARE CURSOR of a read
// query, FETCH, MOVE, CLOSE, PREPARE/DEALLOCATE, DISCARD, SET of harmless
// settings (statement_timeout, application_name, DateStyle, TimeZone,
// extra_float_digits, client_encoding only to UTF8, ...), SET TRANSACTION
// ISOLATION LEVEL.
//
// ClassWrite: INSERT, UPDATE, DELETE, MERGE, COPY FROM STDIN, a data-modifying
// statement anywhere in the tree (a WITH clause, a rule action), SELECT ...
// FOR UPDATE/SHARE, LOCK, BEGIN READ WRITE, SET TRANSACTION READ WRITE, and
// calls of nextval, setval and large-object writers.
//
// ClassAdmin: DDL (CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, COMMENT),
// SELECT INTO, CREATE TABLE AS, CREATE MATERIALIZED VIEW, DO, CREATE
// FUNCTION/PROCEDURE, CALL, CREATE RULE/TRIGGER, VACUUM, ANALYZE, REINDEX,
// CLUSTER, CHECKPOINT, LISTEN, NOTIFY, UNLISTEN, pg_notify(), PREPARE
// TRANSACTION. Any statement type without a rule is admin, so statement types
// added to PostgreSQL later fail closed.
//
// ClassForbidden (never, at any access level, unless the policy opts in):
// COPY ... PROGRAM, COPY to or from a server file, SET/RESET role and session
// authorization, SET of search_path, session_replication_role,
// transaction_read_only or default_transaction_read_only (except to on),
// standard_conforming_strings (except to on), client_encoding (except to
// UTF8) and of every setting not on the harmless list (custom settings such as
// app.tenant_id may feed row-level security), RESET ALL, SET SESSION
// CHARACTERISTICS AS TRANSACTION READ WRITE, ALTER SYSTEM, LOAD, CREATE
// EXTENSION, CREATE/ALTER SERVER, USER MAPPING, FOREIGN DATA WRAPPER and
// SUBSCRIPTION (postgres_fdw/dblink loopbacks), and a call anywhere in the
// tree of a dangerous function: pg_read_file, pg_read_binary_file, pg_stat_file,
// pg_ls_*, pg_file_*, lo_import, lo_export, lo_from_bytea, lo_put, dblink*,
// pg_terminate_backend, pg_cancel_backend, pg_reload_conf, pg_rotate_logfile,
// pg_promote, set_config, query_to_xml*, table_to_xml*, cursor_to_xml*,
// schema_to_xml*, database_to_xml*, ts_stat, replication-slot and backup
// functions (see functions.go). Function names match case-insensitively and
// whether or not they are schema-qualified; U&"..." spellings are decoded by
// the parser first. current_setting is fine. DDL that names a dangerous
// function (ALTER FUNCTION ... RENAME, GRANT EXECUTE, CREATE CAST/OPERATOR/
// AGGREGATE/TRIGGER bound to it, a new function under its name) is forbidden
// too, since a later innocent-looking statement would call it, and so are
// reads of pg_authid, pg_shadow, pg_user_mappings, pg_hba_file_rules,
// pg_ident_file_mappings and pg_file_settings.
//
// EXPLAIN ANALYZE is judged as the statement it runs. PREPARE is judged by its
// body; EXECUTE by the body its Session recorded (without a Session, or for a
// name the Session never saw, EXECUTE is refused). FETCH and MOVE are judged
// by the query their Session saw declared (an unknown cursor, e.g. one opened
// by a function returning refcursor, is refused in a Session).
//
// # Unsafe writes
//
// A DELETE or UPDATE without WHERE, or with a WHERE that does not restrict
// rows, is refused unless Config.AllowUnsafeWrites: constants are folded in
// the parse tree (`WHERE true`, `WHERE 1=1`, `WHERE 'a'='a'`, `WHERE NOT
// false`, `WHERE '1'::int = 1`, `WHERE coalesce(true, x)`), a WHERE (or OR
// branch) with no column in it is refused (`WHERE random() < 2`, `WHERE id = 5
// OR 2 > 1`), and so are tautologies over one expression (`WHERE id = id`,
// `WHERE x IS NULL OR x IS NOT NULL`). MERGE whose ON condition does not
// restrict rows is treated the same way when it can update or delete. This is
// a net for accidents and lazy bypasses, not a proof: `WHERE id > -1` matches
// every row and passes.
//
// # Functions of unknown effect
//
// A SELECT calling a function the guard does not know (a user-defined function
// of unknown volatility, possibly SECURITY DEFINER) is classified read. The
// guard cannot see function bodies, and refusing every unknown call would
// refuse most real queries. Known-writing built-ins (nextval, setval,
// large-object writers) raise the class, dangerous ones are forbidden. The
// second wall is PostgreSQL itself: the proxy runs read grants in a read-only
// session under a least-privilege role, where a function that writes fails
// with SQLSTATE 25006 (the tests check this against a real server). The proxy
// MUST set default_transaction_read_only as a startup parameter or role
// setting, not with SET: DISCARD ALL is read (connection pools send it) and
// restores settings to their startup values. RESET ALL is forbidden.
//
// # Procedural bodies
//
// DO blocks and CREATE FUNCTION/PROCEDURE are admin. Their SQL and PL/pgSQL
// bodies are parsed too (PL/pgSQL with pg_query's PL/pgSQL parser, every
// embedded statement and expression with the SQL parser), so a dangerous call
// in a body is forbidden and a DELETE without WHERE in a body is an unsafe
// write. Dynamic SQL (EXECUTE of a string, `EXECUTE 'DR' || 'OP ...'`) and
// bodies in other languages stay opaque and are named in the reasons; bodies
// nested more than a few levels deep are not analysed. Functions in language C
// or internal are forbidden: they can bind any server function under a new
// name. Existing functions, triggers and rules that fire on an allowed
// statement are invisible to the guard and rely on the role's privileges.
//
// # What the proxy must add
//
// The guard parses as PostgreSQL does with standard_conforming_strings=on and
// a UTF8 client encoding. CheckStartup refuses startup parameters that change
// role, read-only state, search_path, encoding or quoting, replication
// connections, and empty or mismatched database/user names; SET of those is
// forbidden; CheckServerParameter tells the proxy to end a session whose server
// reports otherwise (CVE-2025-1094 class). The proxy must refuse the
// FunctionCall message (it carries no SQL) and must check every Parse message
// (the extended protocol carries one statement per Parse; a named statement is
// judged when parsed, and replacing the unnamed statement is a new Parse).
//
// # Caches
//
// Verdicts are cached by exact text, and by shape: a statement's normalized
// text (constants replaced by $n), only when the verdict provably does not
// read any constant (shape.go says how that is decided and checked). Clients
// that inline literals (pgbench, simple-query ORMs) then pay pg_query's
// Normalize instead of a parse per statement; Verdict.Shape lets the proxy key
// its masking plans the same way.
package guard
