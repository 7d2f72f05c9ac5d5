package guard

import (
	"strings"
)

// funcRule says what calling a function (or a family of functions, when name
// ends in '*') means for a statement's class.
type funcRule struct {
	name   string // lowercase; "schema.name" matches only that qualified name; trailing '*' is a prefix match
	class  Class
	reason string
}

// dangerousFunctions are forbidden anywhere in a statement: they reach outside
// the database (files, programs, other connections), act on other sessions or
// on the server, change session security state, or run SQL text the guard
// cannot see. AllowFunctions removes entries; a removed function is then judged
// admin, so only admin grants can call it.
var dangerousFunctions = []funcRule{
	{"pg_read_file", ClassForbidden, "reads files on the database server"},
	{"pg_read_binary_file", ClassForbidden, "reads files on the database server"},
	{"pg_stat_file", ClassForbidden, "inspects files on the database server"},
	{"pg_ls_*", ClassForbidden, "lists directories on the database server"},
	{"pg_file_*", ClassForbidden, "writes files on the database server (adminpack)"},
	{"pg_logdir_ls", ClassForbidden, "lists directories on the database server (adminpack)"},
	{"pg_hba_file_rules", ClassForbidden, "reads server configuration files"},
	{"pg_ident_file_mappings", ClassForbidden, "reads server configuration files"},
	{"pg_show_all_file_settings", ClassForbidden, "reads server configuration files"},
	{"lo_import", ClassForbidden, "reads a server file into a large object"},
	{"lo_export", ClassForbidden, "writes a large object to a server file"},
	{"lo_from_bytea", ClassForbidden, "creates a large object (the first step of lo_export file writes)"},
	{"lo_put", ClassForbidden, "writes into a large object (the first step of lo_export file writes)"},
	{"dblink*", ClassForbidden, "opens another database connection that bypasses the proxy"},
	{"postgres_fdw_*", ClassForbidden, "manages foreign-server connections that bypass the proxy"},
	{"pg_terminate_backend", ClassForbidden, "terminates other sessions"},
	{"pg_cancel_backend", ClassForbidden, "cancels other sessions' queries"},
	{"pg_signal_backend", ClassForbidden, "signals other sessions"},
	{"pg_reload_conf", ClassForbidden, "reloads the server configuration"},
	{"pg_rotate_logfile", ClassForbidden, "rotates the server log"},
	{"pg_promote", ClassForbidden, "promotes a standby server"},
	{"pg_switch_wal", ClassForbidden, "forces a WAL switch"},
	{"pg_create_restore_point", ClassForbidden, "writes a WAL restore point"},
	{"pg_backup_*", ClassForbidden, "controls server backups"},
	{"pg_start_backup", ClassForbidden, "controls server backups"},
	{"pg_stop_backup", ClassForbidden, "controls server backups"},
	{"pg_wal_replay_*", ClassForbidden, "controls WAL replay"},
	{"pg_log_backend_memory_contexts", ClassForbidden, "writes other sessions' state to the server log"},
	{"pg_create_*_replication_slot", ClassForbidden, "creates a replication slot"},
	{"pg_copy_*_replication_slot", ClassForbidden, "creates a replication slot"},
	{"pg_drop_replication_slot", ClassForbidden, "drops a replication slot"},
	{"pg_replication_slot_advance", ClassForbidden, "moves a replication slot"},
	{"pg_logical_*", ClassForbidden, "reads or writes the logical replication stream of the whole database"},
	{"pg_replication_origin_*", ClassForbidden, "changes replication origins"},
	{"pg_truncate_visibility_map", ClassForbidden, "damages relation visibility maps"},
	{"set_config", ClassForbidden, "changes session settings (role, search_path, read-only state) from inside a query"},
	{"query_to_xml*", ClassForbidden, "runs SQL text the guard cannot see"},
	{"query_to_xmlschema", ClassForbidden, "runs SQL text the guard cannot see"},
	{"cursor_to_xml*", ClassForbidden, "reads a cursor the guard did not see declared"},
	{"table_to_xml*", ClassForbidden, "dumps a whole table by name from inside a query"},
	{"schema_to_xml*", ClassForbidden, "dumps a whole schema from inside a query"},
	{"database_to_xml*", ClassForbidden, "dumps the whole database from inside a query"},
	{"ts_stat", ClassForbidden, "runs SQL text the guard cannot see"},
	{"ts_rewrite", ClassForbidden, "may run SQL text the guard cannot see"},
	{"binary_upgrade_*", ClassForbidden, "is an internal pg_upgrade function"},
}

// effectFunctions are built-in functions whose effect raises a statement's
// class even inside a SELECT. They are not dangerous, only not read-only.
var effectFunctions = []funcRule{
	{"nextval", ClassWrite, "advances a sequence"},
	{"setval", ClassWrite, "sets a sequence"},
	{"lo_create", ClassWrite, "creates a large object"},
	{"lo_creat", ClassWrite, "creates a large object"},
	{"lo_unlink", ClassWrite, "deletes a large object"},
	{"lowrite", ClassWrite, "writes a large object"},
	{"lo_truncate", ClassWrite, "truncates a large object"},
	{"lo_truncate64", ClassWrite, "truncates a large object"},
	{"pg_notify", ClassAdmin, "sends a notification to other sessions"},
	{"pg_stat_reset*", ClassAdmin, "resets server statistics"},
	{"pg_import_system_collations", ClassAdmin, "creates collations"},
}

// funcRules is the function part of a guard's configuration.
type funcRules struct {
	policyDeny []string   // DenyFunctions patterns, lowercase; win over everything
	deny       []funcRule // the default dangerous list
	allow      []string   // AllowFunctions patterns, lowercase
	effect     []funcRule
}

func defaultFuncRules() *funcRules {
	return &funcRules{deny: dangerousFunctions, effect: effectFunctions}
}

func newFuncRules(denyExtra, allow []string) *funcRules {
	r := &funcRules{deny: dangerousFunctions, effect: effectFunctions}
	for _, d := range denyExtra {
		d = strings.ToLower(strings.TrimSpace(d))
		if d != "" {
			r.policyDeny = append(r.policyDeny, d)
		}
	}
	for _, a := range allow {
		a = strings.ToLower(strings.TrimSpace(a))
		if a != "" {
			r.allow = append(r.allow, a)
		}
	}
	return r
}

// matchFunc reports whether pattern matches a function called as
// schema.name (schema may be empty). Names compare case-insensitively;
// callers pass lowercase. A schema-qualified pattern also matches an
// unqualified call, which may resolve to that schema through search_path.
func matchFunc(pattern, schema, name string) bool {
	if i := strings.IndexByte(pattern, '.'); i >= 0 {
		if schema != "" && pattern[:i] != schema {
			return false
		}
		pattern = pattern[i+1:]
	}
	return globMatch(pattern, name)
}

// globMatch matches name against a pattern in which '*' stands for any run
// of characters.
func globMatch(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	if !strings.HasPrefix(name, pattern[:star]) {
		return false
	}
	return globMatchRest(pattern[star+1:], name[star:])
}

func globMatchRest(pattern, name string) bool {
	if pattern == "" {
		return true
	}
	for i := 0; i <= len(name); i++ {
		if globMatch(pattern, name[i:]) {
			return true
		}
	}
	return false
}

// judge returns the finding for a call of schema.name, if any.
func (r *funcRules) judge(schema, name string) (finding, bool) {
	schema, name = strings.ToLower(schema), strings.ToLower(name)
	shown := name
	if schema != "" {
		shown = schema + "." + name
	}
	for _, d := range r.policyDeny {
		if matchFunc(d, schema, name) {
			return finding{class: ClassForbidden, reason: "calls " + shown + " (denied by policy)"}, true
		}
	}
	for _, d := range r.deny {
		if !matchFunc(d.name, schema, name) {
			continue
		}
		if r.allowed(schema, name) {
			return finding{class: ClassAdmin, reason: "calls " + shown + " (" + d.reason + "; allowed by policy for admin grants)"}, true
		}
		return finding{class: ClassForbidden, reason: "calls " + shown + " (" + d.reason + ")"}, true
	}
	for _, e := range r.effect {
		if matchFunc(e.name, schema, name) {
			return finding{class: e.class, reason: "calls " + shown + " (" + e.reason + ")"}, true
		}
	}
	return finding{}, false
}

func (r *funcRules) allowed(schema, name string) bool {
	for _, a := range r.allow {
		if matchFunc(a, schema, name) {
			return true
		}
	}
	return false
}
