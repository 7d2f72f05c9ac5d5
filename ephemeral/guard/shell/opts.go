package shell

import (
	"fmt"
	"strings"
)

// optSpec describes the options of a wrapper or interpreter precisely enough
// to find where its own options end. An option not described is an error:
// the guard cannot know whether it takes a value, so it cannot know which word
// is the command (fail closed).
type optSpec struct {
	// flags are short options without a value; valued are short options
	// that take one (attached, "-uroot", or as the next word, "-u root").
	flags, valued string
	// optional are short options whose value, if any, is attached ("-i{}").
	optional string
	// long options, without the leading "--". A valued one takes "--x=v" or
	// "--x v"; an optional one takes only "--x=v".
	longFlags, longValued, longOptional []string
	// numeric accepts "-N" (nice -10).
	numeric bool
	// plus accepts "+o"-style options (shells).
	plus bool
}

// opts is what parseOpts saw: every option (short ones by their letter,
// long ones by their name) with its values in order.
type opts map[string][]string

func (o opts) has(names ...string) bool {
	for _, n := range names {
		if _, ok := o[n]; ok {
			return true
		}
	}
	return false
}

// parseOpts reads leading options of args and returns what it saw and the
// index of the first operand. "--" ends the options and is skipped.
func parseOpts(args []arg, sp optSpec) (opts, int, error) {
	seen := opts{}
	i := 0
	for i < len(args) {
		a := args[i]
		if !a.lit {
			return seen, i, fmt.Errorf("argument %s is not a literal word", a.src)
		}
		v := a.val
		if v == "--" {
			return seen, i + 1, nil
		}
		if len(v) < 2 || (v[0] != '-' && !(sp.plus && v[0] == '+')) {
			return seen, i, nil
		}
		if strings.HasPrefix(v, "--") {
			name, val, hasVal := strings.Cut(v[2:], "=")
			switch {
			case contains(sp.longFlags, name):
				if hasVal {
					return seen, i, fmt.Errorf("option --%s takes no value", name)
				}
				seen[name] = append(seen[name], "")
			case contains(sp.longOptional, name):
				seen[name] = append(seen[name], val)
			case contains(sp.longValued, name):
				if !hasVal {
					if i+1 >= len(args) {
						return seen, i, fmt.Errorf("option --%s needs a value", name)
					}
					i++
					if !args[i].lit {
						return seen, i, fmt.Errorf("value %s of --%s is not a literal word", args[i].src, name)
					}
					val = args[i].val
				}
				seen[name] = append(seen[name], val)
			default:
				return seen, i, fmt.Errorf("unknown option --%s", name)
			}
			i++
			continue
		}
		if sp.numeric && isNumber(v[1:]) {
			seen["N"] = append(seen["N"], v[1:])
			i++
			continue
		}
		for j := 1; j < len(v); j++ {
			ch := v[j]
			switch {
			case strings.IndexByte(sp.valued, ch) >= 0:
				val := v[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return seen, i, fmt.Errorf("option -%c needs a value", ch)
					}
					i++
					if !args[i].lit {
						return seen, i, fmt.Errorf("value %s of -%c is not a literal word", args[i].src, ch)
					}
					val = args[i].val
				}
				seen[string(ch)] = append(seen[string(ch)], val)
				j = len(v)
			case strings.IndexByte(sp.optional, ch) >= 0:
				seen[string(ch)] = append(seen[string(ch)], v[j+1:])
				j = len(v)
			case strings.IndexByte(sp.flags, ch) >= 0:
				seen[string(ch)] = append(seen[string(ch)], "")
			default:
				return seen, i, fmt.Errorf("unknown option -%c", ch)
			}
		}
		i++
	}
	return seen, i, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
