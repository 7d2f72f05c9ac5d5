package mask

import "strings"

// Field is one RowDescription column after the engine resolved (TableOID, attnum)
// through the catalog.
type Field struct {
	Name     string
	Computed bool // TableOID == 0: an expression, not a plain table column
	// Resolved: the engine found (TableOID, attnum) in the catalog. PostgreSQL reports
	// attnum 0 for a whole-row reference (`SELECT u FROM users u`): that is not a
	// column, so it MUST NOT be resolved (it is then redacted).
	Source   ColumnRef // valid when !Computed && Resolved
	Resolved bool      // the engine could resolve the table OID/attnum
	RelKind  byte      // 'r','p' table; 'v' view; 'm' matview; 'f' foreign; 0 unknown
	TextLike bool      // the column's type is text/varchar/bpchar/name/json/unknown (binary == text bytes)
}

// Action is what happens to every value of one output column.
type Action uint8

const (
	// ActionPass sends values unchanged.
	ActionPass Action = iota
	// ActionScan runs the detectors over each value.
	ActionScan
	// ActionRedact replaces each whole value; the engine rewrites the column's type in
	// RowDescription to text, since redacted values are text.
	ActionRedact
)

func (a Action) String() string {
	switch a {
	case ActionPass:
		return "pass"
	case ActionScan:
		return "scan"
	case ActionRedact:
		return "redact"
	}
	return "unknown"
}

// Plan is the per-column decision for one RowDescription. It is immutable.
type Plan struct {
	actions     []Action
	reasons     []string
	passthrough bool
}

// Action returns the action for column col; a column outside the plan is redacted.
func (p *Plan) Action(col int) Action {
	if p == nil || col < 0 || col >= len(p.actions) {
		return ActionRedact
	}
	return p.actions[col]
}

// Reason says why column col got its action (for logs and tests).
func (p *Plan) Reason(col int) string {
	if p == nil || col < 0 || col >= len(p.reasons) {
		return "column outside the plan"
	}
	return p.reasons[col]
}

// Passthrough reports that no column needs any work, so the engine may relay DataRows
// without decoding them.
func (p *Plan) Passthrough() bool { return p != nil && p.passthrough }

// Plan decides the action for each output column. lin is the statement's lineage from
// [Analyze]; nil or Unknown means the lineage is not known, and then every column that
// is not a plain table column is redacted when column rules exist.
func (m *Masker) Plan(fields []Field, lin *Lineage) *Plan {
	p := &Plan{actions: make([]Action, len(fields)), reasons: make([]string, len(fields))}
	otherwise, why := ActionPass, "no masking rule applies"
	if len(m.detectors) > 0 {
		otherwise, why = ActionScan, "scanned by detectors"
	}
	if !m.HasColumnRules() {
		for i := range fields {
			p.actions[i], p.reasons[i] = otherwise, why
		}
		p.passthrough = otherwise == ActionPass
		return p
	}
	cols := align(lin, fields)
	p.passthrough = true
	for i, f := range fields {
		var c *ColumnLineage
		if cols != nil {
			c = &cols[i]
		}
		redact, reason := m.decide(f, c, lin)
		if redact {
			p.actions[i], p.reasons[i] = ActionRedact, reason
		} else {
			p.actions[i], p.reasons[i] = otherwise, why
		}
		if p.actions[i] != ActionPass {
			p.passthrough = false
		}
	}
	return p
}

// decide reports whether a column must be redacted, with the reason. c is the column's
// lineage, nil when unknown.
func (m *Masker) decide(f Field, c *ColumnLineage, lin *Lineage) (bool, string) {
	plainTable := false
	if !f.Computed {
		if !f.Resolved {
			return true, "source column could not be resolved"
		}
		if f.Source.Column == "" || f.Source.Column == "*" {
			return true, "whole-row reference to " + f.Source.String()
		}
		switch f.RelKind {
		case 'r', 'p':
			if m.ColumnMasked(f.Source) {
				return true, "column rule matches " + f.Source.String()
			}
			plainTable = true
		case 'v':
			return true, "column of view " + f.Source.String() + ": a view can rename a masked column"
		case 'm':
			return true, "column of materialized view " + f.Source.String() + ": it can rename a masked column"
		case 'f':
			return true, "column of foreign table " + f.Source.String() + ": its remote source is unknown"
		default:
			return true, "source relation of " + f.Source.String() + " has unknown kind"
		}
	}
	if c == nil {
		if plainTable {
			return false, ""
		}
		return true, "computed column with unknown lineage"
	}
	if c.Opaque {
		return true, "data comes from a source the statement does not show (function, unknown relation)"
	}
	if c.WholeRow {
		return true, "whole-row reference"
	}
	if plainTable && c.Direct {
		// The catalog proves the value is that table column, and the parse tree agrees
		// that nothing else feeds it.
		return false, ""
	}
	for _, r := range c.Refs {
		if m.ColumnMasked(r) {
			return true, "derived from masked column " + r.String()
		}
	}
	for _, r := range c.Refs {
		if !lin.provenTable(r) {
			return true, "derived from " + r.String() + " whose relation is not proven to be a table"
		}
	}
	return false, ""
}

// provenTable reports whether the relation of r is known to be an ordinary or
// partitioned table. A reference whose relation is unknown is proven only when every
// relation the statement reads is.
func (l *Lineage) provenTable(r ColumnRef) bool {
	if l == nil {
		return false
	}
	matched := false
	for _, rel := range l.Relations {
		if r.Table != "" && !strings.EqualFold(rel.Name, r.Table) {
			continue
		}
		if r.Schema != "" && rel.Schema != "" && !strings.EqualFold(rel.Schema, r.Schema) {
			continue
		}
		matched = true
		if rel.Kind != 'r' && rel.Kind != 'p' {
			return false
		}
	}
	return matched || r.Table == ""
}

// align maps the lineage's columns onto the output fields. A Star entry stands for
// zero or more fields: entries before the first star map from the start, entries
// after the last star from the end. A field in between gets the union of the entries
// from the first star to the last, except that a plain table column picks the star
// over that very table when the region holds only plain columns (a join of tables
// with `*`). It returns nil when the lineage cannot be aligned.
func align(lin *Lineage, fields []Field) []ColumnLineage {
	if lin == nil || lin.Unknown {
		return nil
	}
	n := len(fields)
	cols := lin.Columns
	first, last := -1, -1
	for i, c := range cols {
		if c.Star {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		if len(cols) != n {
			return nil
		}
		return cols
	}
	head, tail := cols[:first], cols[last+1:]
	if len(head)+len(tail) > n {
		return nil
	}
	region := cols[first : last+1]
	var union ColumnLineage
	simple := true
	for _, c := range region {
		union.merge(c)
		simple = simple && c.Direct
	}
	union.Direct = len(region) == 1 && region[0].Direct
	out := make([]ColumnLineage, 0, n)
	out = append(out, head...)
	for i := len(head); i < n-len(tail); i++ {
		c := union
		if f := fields[i]; simple && len(region) > 1 && !f.Computed && f.Resolved {
			if picked, ok := starOver(region, f.Source); ok {
				c = picked
			}
		}
		out = append(out, c)
	}
	return append(out, tail...)
}

// starOver finds the star entries over the table of src: `t.*` for a plain table t.
func starOver(region []ColumnLineage, src ColumnRef) (ColumnLineage, bool) {
	var out ColumnLineage
	found := false
	for _, c := range region {
		if !c.Star || len(c.Refs) != 1 {
			continue
		}
		r := c.Refs[0]
		if r.Column != "" || !strings.EqualFold(r.Table, src.Table) || r.Schema != "" && !strings.EqualFold(r.Schema, src.Schema) {
			continue
		}
		if !found {
			out = c
			found = true
		} else {
			out.merge(c)
		}
	}
	out.Star = false
	return out, found
}

// Sensitive reports whether free text produced while running the statement of lin
// (ErrorResponse and NoticeResponse fields, and NotificationResponse or
// ParameterStatus messages that arrive before its ReadyForQuery) may quote a masked
// value: `SELECT card_number::int FROM users` prints the number in its error. It is
// true when column rules exist and the statement reads a masked column anywhere
// (WHERE and JOIN included), a whole row, an opaque source or a relation not proven to
// be a table, or when lin is nil or describes nothing it reads. The engine should then
// use [Masker.TextFor] on those texts (and refuse COPY ... TO, whose CopyData rows
// carry no per-column plan).
func (m *Masker) Sensitive(lin *Lineage) bool {
	if !m.HasColumnRules() {
		return false
	}
	if lin == nil {
		return true
	}
	r := lin.Reads
	if r.Opaque || r.WholeRow {
		return true
	}
	for _, ref := range r.Refs {
		if m.ColumnMasked(ref) || !lin.provenTable(ref) {
			return true
		}
	}
	return false
}

// SensitiveTextMarker replaces free text that may quote a masked value.
const SensitiveTextMarker = "[masked: the statement reads masked data]"

// TextFor masks free text produced while running the statement of lin: the whole
// text is replaced by [SensitiveTextMarker] when [Masker.Sensitive] says it may quote
// a masked value, else the detectors run over it as with [Masker.Text]. Keep the
// SQLSTATE code and severity as they are; pass each text field separately.
func (m *Masker) TextFor(lin *Lineage, b []byte) []byte {
	if len(b) > 0 && m.Sensitive(lin) {
		m.columnCnt.Add(1)
		return []byte(SensitiveTextMarker)
	}
	return m.Text(b)
}
