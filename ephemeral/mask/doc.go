// Package mask is the masker of the ephemeral proxy: the step between the guard and
// the recorder in token → policy → grant → credential → engine → guard → MASK → record.
// For every value the PostgreSQL engine sends back to the agent it decides whether the
// value passes, is scanned by content detectors, or is redacted whole, and it does the
// masking. The recorder only ever sees masked values.
//
// # Two kinds of rules
//
// Column rules ("public.users.card_number", "*.email", "public.*.ssn", "users.email")
// name source columns whose values must never leave the proxy. Detectors (credit_card,
// email, us_ssn, iban, aws_access_key, aws_secret_key, jwt, pem_private_key,
// token_prefix) are hand-written byte scanners that find secrets in any text: result
// values, error and notice fields, CopyData, NOTIFY payloads and ParameterStatus values
// ([Masker.Text]).
//
// # Deciding per output column
//
// The engine resolves each RowDescription field's (TableOID, attnum) through the catalog
// into a [Field]; [Analyze] parses the statement with PostgreSQL's own parser
// (pg_query_go) and says, per output column, which source columns feed it ([Lineage]).
// [Masker.Plan] combines both, failing closed whenever column rules exist:
//
//   - a plain column of a table (RelKind r/p) is redacted when a rule names it;
//   - a plain column of a view, materialized view, foreign table, or one the engine could
//     not resolve is redacted: a view can rename a masked column, and the masker does not
//     read view definitions, so it cannot prove the column harmless;
//   - a computed column (casts, encode, to_hex, reverse, translate, substrings glued
//     together, string_agg, array_agg, json_agg, row_to_json, to_jsonb, md5, UNION
//     branches, CTEs, subqueries...) is redacted when its lineage touches a masked column
//     (by name when the table is unknown), a whole-row reference (t, t.*, ROW(...)), an
//     opaque source (a function not on the built-in allow list, a relation whose kind the
//     engine did not prove to be a table), or when the lineage is unknown;
//   - everything else is scanned by the detectors when any are enabled, else passed.
//
// Over-masking is accepted; under-masking is a bug. The masker never returns original
// data because something failed: a statement it cannot parse gets no lineage, and then
// every computed column is redacted.
//
// The lineage of a computed column names base relations, not their kinds. The engine
// SHOULD set [Relation.Kind] for each entry of [Lineage.Relations] (for instance with
// [RelKindQuery]); until it does, a computed column that reads any relation is redacted,
// because that relation could be a view renaming a masked column.
//
// # Other paths back to the client
//
// Error and notice texts can quote any value a statement touched, in WHERE clauses
// too (`SELECT card_number::int FROM users` prints the number in its error).
// [Lineage.Reads] records everything a statement reads; [Masker.Sensitive] says
// whether that includes masked data, and [Masker.TextFor] then replaces such texts
// whole, else runs the detectors. CopyData, NOTIFY payloads and ParameterStatus
// values go through [Masker.Text]; COPY ... TO of a sensitive statement has no
// per-column plan and should be refused by the engine.
//
// # What output masking cannot stop
//
// Masking acts on what comes back, not on what the statement computes. A WHERE clause
// is an oracle: `SELECT id FROM users WHERE card_number LIKE '4111%'` returns nothing
// masked yet reveals a prefix, one query at a time; so do ORDER BY, GROUP BY, joins and
// EXISTS over masked columns. Policy offers deny rules for predicates on masked columns;
// use them where such oracles matter. Likewise, data copied by a write (CREATE TABLE AS,
// INSERT ... SELECT into another table, set_config, NOTIFY) leaves the masked column's
// lineage: read-only sessions and the guard are the boundary there, detectors a second
// line. Detectors see bytes as sent: a secret that was encoded (hex, base64, split
// across values) before it left the database is only caught by column rules.
//
// The function allow list assumes built-in names resolve to pg_catalog; a session that
// can create functions and change search_path could shadow them, which the guard
// denies.
package mask
