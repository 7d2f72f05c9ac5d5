package postgres

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

// rowPlan is how the rows of one result are relayed: the RowDescription the client
// sees and, unless passthrough, what to do with each column.
type rowPlan struct {
	names       []string
	cols        []colInfo
	plan        *mask.Plan
	passthrough bool
	// msg is the whole RowDescription message sent to the client (rewritten when a
	// column is redacted).
	msg []byte
}

type colInfo struct {
	oid      uint32
	binary   bool
	textLike bool
	action   mask.Action
}

// planCache caches plans by statement text, statement index and RowDescription
// bytes, and lineage by statement text. It is bounded: when full it starts over.
type planCache struct {
	mu      sync.Mutex
	max     int
	plans   map[string]*rowPlan
	lineage map[string][]mask.Lineage
}

func newPlanCache(max int) *planCache {
	return &planCache{max: max, plans: map[string]*rowPlan{}, lineage: map[string][]mask.Lineage{}}
}

func (pc *planCache) get(key string) *rowPlan {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.plans[key]
}

func (pc *planCache) put(key string, p *rowPlan) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.plans) >= pc.max {
		clear(pc.plans)
	}
	pc.plans[key] = p
}

// lineageOf returns the lineage of statement idx of sql, or nil when the masker
// cannot analyse it (the masker then decides, failing closed). key is sql, or
// the guard's shape of sql (texts of one shape have the same lineage).
func (pc *planCache) lineageOf(ctx context.Context, cat *catalog, key, sql string, idx int) *mask.Lineage {
	pc.mu.Lock()
	lins, ok := pc.lineage[key]
	pc.mu.Unlock()
	if !ok {
		var err error
		lins, err = mask.Analyze(sql)
		if err != nil {
			lins = nil
		}
		for i := range lins {
			cat.relKinds(ctx, lins[i].Relations)
		}
		pc.mu.Lock()
		if len(pc.lineage) >= pc.max {
			clear(pc.lineage)
		}
		pc.lineage[key] = lins
		pc.mu.Unlock()
	}
	if idx < 0 || idx >= len(lins) {
		return nil
	}
	return &lins[idx]
}

// planFor builds (or finds) the plan for a RowDescription body answering statement
// idx of sql; shape is the guard's Verdict.Shape of sql, or "".
func (c *conn) planFor(ctx context.Context, sql, shape string, idx int, body []byte) (*rowPlan, error) {
	e := c.e
	// Without masking the plan depends on the RowDescription alone, so statements
	// that differ only in their literals share it. With masking it depends on the
	// statement's lineage too, the same for every text of one shape.
	key := "\x01" + string(body)
	text := sql
	if shape != "" {
		text = "\x02" + shape
	}
	if e.masking() {
		key = text + "\x00" + strconv.Itoa(idx) + "\x00" + string(body)
	}
	if p := e.plans.get(key); p != nil {
		return p, nil
	}
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return nil, fmt.Errorf("decode RowDescription: %w", err)
	}
	p := &rowPlan{names: make([]string, len(rd.Fields)), cols: make([]colInfo, len(rd.Fields)), passthrough: true}
	for i, f := range rd.Fields {
		p.names[i] = string(f.Name)
		p.cols[i] = colInfo{oid: f.DataTypeOID, binary: f.Format == 1}
	}
	if e.masking() {
		keys := make([]colKey, len(rd.Fields))
		types := make([]uint32, len(rd.Fields))
		for i, f := range rd.Fields {
			keys[i] = colKey{table: f.TableOID, attnum: int16(f.TableAttributeNumber)}
			types[i] = f.DataTypeOID
		}
		cols, found, cats := e.catalog.resolve(ctx, keys, types)
		fields := make([]mask.Field, len(rd.Fields))
		for i, f := range rd.Fields {
			tl := textLike(f.DataTypeOID, cats)
			p.cols[i].textLike = tl
			fields[i] = mask.Field{
				Name:     string(f.Name),
				Computed: f.TableOID == 0,
				TextLike: tl,
			}
			if f.TableOID != 0 && found[i] {
				fields[i].Source = mask.ColumnRef{Schema: cols[i].schema, Table: cols[i].table, Column: cols[i].name}
				fields[i].Resolved = true
				fields[i].RelKind = cols[i].relKind
			}
		}
		p.plan = e.cfg.Masker.Plan(fields, e.plans.lineageOf(ctx, e.catalog, text, sql, idx))
		if p.plan == nil {
			return nil, fmt.Errorf("masker returned no plan")
		}
		p.passthrough = p.plan.Passthrough()
		if !p.passthrough {
			rewritten := false
			for i := range rd.Fields {
				a := p.plan.Action(i)
				p.cols[i].action = a
				if a == mask.ActionRedact && rd.Fields[i].DataTypeOID != 25 {
					// The client decodes the masked string as text.
					rd.Fields[i].DataTypeOID = 25
					rd.Fields[i].DataTypeSize = -1
					rd.Fields[i].TypeModifier = -1
					rewritten = true
				}
			}
			if rewritten {
				msg, err := rd.Encode(nil)
				if err != nil {
					return nil, fmt.Errorf("encode RowDescription: %w", err)
				}
				p.msg = msg
			}
		}
	}
	if p.msg == nil {
		p.msg = append([]byte{'T', 0, 0, 0, 0}, body...)
		putLen(p.msg)
	}
	e.plans.put(key, p)
	return p, nil
}

func putLen(msg []byte) {
	n := uint32(len(msg) - 1)
	msg[1], msg[2], msg[3], msg[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// maskRow masks one DataRow body under p and appends the result to the client batch.
// Redacted and scanned values go through the masker. A binary value whose type is not
// text-like cannot carry a masked string: redacted ones become NULL, scanned ones
// are decoded to text for the detectors and become NULL if the detectors would
// change them (or if they cannot be decoded).
func (c *conn) maskRow(p *rowPlan, body []byte) ([][]byte, error) {
	vals, err := dataRowValues(body, c.vals)
	if err != nil {
		return nil, err
	}
	c.vals = vals
	if len(vals) != len(p.cols) {
		return nil, fmt.Errorf("DataRow has %d values for %d columns", len(vals), len(p.cols))
	}
	m := c.e.cfg.Masker
	for i, v := range vals {
		col := p.cols[i]
		if v == nil || col.action == mask.ActionPass {
			continue
		}
		switch {
		case !col.binary || col.textLike:
			vals[i] = m.Value(p.plan, i, v)
			if vals[i] == nil {
				vals[i] = []byte{} // the masker never turns a value into NULL by accident
			}
		case col.action == mask.ActionRedact:
			vals[i] = nil
		default:
			text, ok := c.binaryText(col.oid, v)
			if !ok || !bytes.Equal(m.Value(p.plan, i, text), text) {
				vals[i] = nil
			}
		}
	}
	c.cw.buf = appendDataRow(c.cw.buf, vals)
	return vals, nil
}

// binaryText renders a binary-format value as text for the detectors.
func (c *conn) binaryText(oid uint32, v []byte) ([]byte, bool) {
	if oid == 17 { // bytea: the raw bytes
		return v, true
	}
	t, ok := c.typeMap.TypeForOID(oid)
	if !ok {
		return nil, false
	}
	dv, err := t.Codec.DecodeDatabaseSQLValue(c.typeMap, oid, 1, v)
	if err != nil {
		return nil, false
	}
	switch x := dv.(type) {
	case nil:
		return nil, true
	case []byte:
		return x, true
	case string:
		return []byte(x), true
	case time.Time:
		return []byte(x.Format(time.RFC3339Nano)), true
	case driver.Valuer:
		return nil, false
	default:
		return []byte(fmt.Sprint(x)), true
	}
}

// resultRec accumulates one result for the recording: names, the first rows, the
// count.
type resultRec struct {
	active bool
	names  []string
	rows   [][]*string
	count  int64
}

func (c *conn) recordRow(p *rowPlan, vals [][]byte) {
	r := &c.res
	if !r.active {
		r.active = true
		if p != nil {
			r.names = p.names
		}
	}
	r.count++
	if len(r.rows) >= c.e.cfg.MaxRecordedRows {
		return
	}
	row := make([]*string, len(vals))
	for i, v := range vals {
		if v == nil {
			continue
		}
		var s string
		if p != nil && i < len(p.cols) && p.cols[i].binary {
			s = `\x` + hex.EncodeToString(v)
		} else {
			s = string(v)
		}
		row[i] = &s
	}
	r.rows = append(r.rows, row)
}
