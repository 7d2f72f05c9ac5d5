package guard

import (
	"strings"
)

// harmlessSettings are the run-time settings (GUCs) a session may change at any
// access level: formatting, timeouts, planner knobs. Everything not listed
// here, and not a constrained setting below, is forbidden: an unknown custom
// setting (app.tenant_id) may feed row-level security policies.
var harmlessSettings = map[string]bool{
	"application_name": true, "statement_timeout": true, "lock_timeout": true,
	"idle_in_transaction_session_timeout": true, "idle_session_timeout": true,
	"datestyle": true, "timezone": true, "intervalstyle": true, "timezone_abbreviations": true,
	"extra_float_digits": true, "bytea_output": true, "client_min_messages": true,
	"default_transaction_isolation": true, "transaction_isolation": true,
	"default_transaction_deferrable": true, "transaction_deferrable": true,
	"lc_monetary": true, "lc_numeric": true, "lc_time": true,
	"xmlbinary": true, "xmloption": true, "array_nulls": true, "quote_all_identifiers": true,
	"default_text_search_config": true, "gin_fuzzy_search_limit": true,
	"row_security": true, "synchronous_commit": true,
	"work_mem": true, "hash_mem_multiplier": true, "temp_buffers": true,
	"geqo": true, "geqo_threshold": true, "jit": true, "plan_cache_mode": true,
	"cursor_tuple_fraction": true, "from_collapse_limit": true, "join_collapse_limit": true,
	"constraint_exclusion": true, "max_parallel_workers_per_gather": true,
	"random_page_cost": true, "seq_page_cost": true, "cpu_tuple_cost": true,
	"cpu_index_tuple_cost": true, "cpu_operator_cost": true, "effective_cache_size": true,
	"parallel_setup_cost": true, "parallel_tuple_cost": true, "default_statistics_target": true,
}

// harmlessPrefixes are families of planner switches (enable_seqscan, ...).
var harmlessPrefixes = []string{"enable_"}

// settingVerdict is the guard's judgement of changing one setting.
type settingVerdict struct {
	class  Class
	reason string
}

// valueMode says how a setting is being changed.
type valueMode int

const (
	modeValue   valueMode = iota // SET x = v (values in vals)
	modeDefault                  // SET x TO DEFAULT, RESET x
	modeCurrent                  // SET x FROM CURRENT
)

// judgeSetting decides a change of setting name (any case) to vals.
// ok is false when vals could not be read as plain constants.
func judgeSetting(name string, mode valueMode, vals []string, ok bool) settingVerdict {
	n := strings.ToLower(name)
	switch n {
	case "role", "session_authorization":
		return settingVerdict{ClassForbidden, "changes the session's role"}
	case "search_path":
		return settingVerdict{ClassForbidden, "changes how unqualified names resolve (search_path hijacking, CVE-2018-1058 class)"}
	case "session_replication_role":
		return settingVerdict{ClassForbidden, "disables triggers, rules and foreign-key enforcement"}
	case "transaction_read_only", "default_transaction_read_only":
		if mode == modeValue && ok && len(vals) == 1 && isTrueLiteral(vals[0]) {
			return settingVerdict{ClassRead, "turns read-only mode on"}
		}
		return settingVerdict{ClassForbidden, "may turn read-only mode off"}
	case "client_encoding":
		if mode == modeValue && ok && len(vals) == 1 && isUTF8Name(vals[0]) {
			return settingVerdict{ClassRead, "keeps the client encoding UTF8"}
		}
		return settingVerdict{ClassForbidden, "client encodings other than UTF8 let the proxy and the server read quotes differently (CVE-2025-1094 class)"}
	case "standard_conforming_strings":
		if mode == modeValue && ok && len(vals) == 1 && isTrueLiteral(vals[0]) {
			return settingVerdict{ClassRead, "keeps standard_conforming_strings on"}
		}
		return settingVerdict{ClassForbidden, "standard_conforming_strings=off lets backslashes hide quotes from the guard"}
	}
	if harmlessSettings[n] {
		return settingVerdict{ClassRead, "changes a harmless session setting"}
	}
	for _, p := range harmlessPrefixes {
		if strings.HasPrefix(n, p) {
			return settingVerdict{ClassRead, "changes a harmless planner setting"}
		}
	}
	return settingVerdict{ClassForbidden, "changes setting " + n + ", which is not on the guard's list of harmless settings"}
}

// isTrueLiteral accepts only spellings PostgreSQL's parse_bool reads as true.
func isTrueLiteral(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return true
	}
	return false
}

// isUTF8Name reports whether an encoding name means UTF8 the way PostgreSQL
// normalises encoding names (case and punctuation are ignored).
func isUTF8Name(v string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(v) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	switch b.String() {
	case "utf8", "unicode":
		return true
	}
	return false
}
