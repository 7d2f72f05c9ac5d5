package guard

import (
	"errors"
	"fmt"
	"strings"
)

// ErrStartup is wrapped by every CheckStartup refusal.
var ErrStartup = errors.New("guard: startup parameters refused")

// CheckStartup judges a client's StartupMessage parameters before the proxy
// opens the upstream connection. It refuses:
//   - an empty or missing user or database, or one that differs from the
//     grant's (wantUser, wantDatabase; both required);
//   - replication connections;
//   - protocol extension parameters (_pq_.*);
//   - any other parameter, and any `-c name=value` / `--name=value` in
//     options, that is not a harmless setting by the same rules as SET
//     (role, session_authorization, search_path, default_transaction_read_only=off,
//     client_encoding other than UTF8, standard_conforming_strings=off,
//     unknown settings ...), and any other command-line switch in options.
//
// PostgreSQL treats every unrecognised startup key as a setting, so
// `role=postgres` as a parameter is the same as `options=-c role=postgres`.
func (g *Guard) CheckStartup(params map[string]string, wantDatabase, wantUser string) error {
	return CheckStartup(params, wantDatabase, wantUser)
}

// CheckStartup is Guard.CheckStartup without a Guard.
func CheckStartup(params map[string]string, wantDatabase, wantUser string) error {
	if wantUser == "" || wantDatabase == "" {
		return fmt.Errorf("%w: the grant names no user or database", ErrStartup)
	}
	user, database := params["user"], params["database"]
	switch {
	case user == "":
		return fmt.Errorf("%w: empty user name", ErrStartup)
	case database == "":
		return fmt.Errorf("%w: empty database name", ErrStartup)
	case user != wantUser:
		return fmt.Errorf("%w: user %q is not the grant's user", ErrStartup, user)
	case database != wantDatabase:
		return fmt.Errorf("%w: database %q is not the grant's database", ErrStartup, database)
	}
	for k, v := range params {
		switch k {
		case "user", "database":
			continue
		case "replication":
			if !isFalseLiteral(v) {
				return fmt.Errorf("%w: replication connections are not allowed", ErrStartup)
			}
			continue
		case "options":
			if err := checkOptions(v); err != nil {
				return err
			}
			continue
		}
		if strings.HasPrefix(k, "_pq_.") {
			return fmt.Errorf("%w: protocol extension %q is not allowed", ErrStartup, k)
		}
		if err := checkStartupSetting(k, v); err != nil {
			return err
		}
	}
	return nil
}

func checkStartupSetting(name, value string) error {
	if name == "" {
		return fmt.Errorf("%w: empty parameter name", ErrStartup)
	}
	v := judgeSetting(name, modeValue, []string{value}, true)
	if v.class != ClassRead {
		return fmt.Errorf("%w: %s=%q %s", ErrStartup, strings.ToLower(name), value, v.reason)
	}
	return nil
}

// checkOptions splits the options parameter like PostgreSQL's pg_split_opts
// (whitespace separates, backslash escapes the next character) and accepts
// only -c name=value, -cname=value and --name=value switches with harmless
// settings. As in PostgreSQL, '-' in a setting name means '_'.
func checkOptions(opts string) error {
	args := splitOpts(opts)
	for i := 0; i < len(args); i++ {
		a := args[i]
		var kv string
		switch {
		case a == "-c":
			if i+1 >= len(args) {
				return fmt.Errorf("%w: options: -c without a setting", ErrStartup)
			}
			i++
			kv = args[i]
		case strings.HasPrefix(a, "--"):
			kv = a[2:]
		case strings.HasPrefix(a, "-c"):
			kv = a[2:]
		default:
			return fmt.Errorf("%w: options: switch %q is not allowed", ErrStartup, a)
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%w: options: %q has no value", ErrStartup, kv)
		}
		if err := checkStartupSetting(strings.ReplaceAll(name, "-", "_"), value); err != nil {
			return err
		}
	}
	return nil
}

func splitOpts(s string) []string {
	var out []string
	var cur strings.Builder
	in, esc := false, false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc, in = false, true
		case r == '\\':
			esc, in = true, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// CheckServerParameter judges a ParameterStatus the upstream server reports.
// The guard parses SQL as PostgreSQL does with standard_conforming_strings=on
// and a UTF8 client encoding; if the server says otherwise (a role or
// database default, a server setting), the proxy and the server would read
// quotes differently, so the proxy must end the session.
func CheckServerParameter(name, value string) error {
	switch strings.ToLower(name) {
	case "standard_conforming_strings":
		if !isTrueLiteral(value) {
			return fmt.Errorf("guard: server reports standard_conforming_strings=%q; the guard requires on", value)
		}
	case "client_encoding":
		if !isUTF8Name(value) {
			return fmt.Errorf("guard: server reports client_encoding=%q; the guard requires UTF8", value)
		}
	}
	return nil
}
