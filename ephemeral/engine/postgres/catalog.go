package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

// catalog resolves RowDescription fields (table OID, attribute number) to their
// schema.table.column source, through a separate connection with the grant's
// credential, opened lazily and closed when the engine has no connection left.
// Results are cached for the engine's life.
type catalog struct {
	config func(appSuffix string) (*pgconn.Config, error)
	log    *slog.Logger

	mu    sync.Mutex
	pg    *pgconn.PgConn
	rels  map[uint32]*relInfo
	types map[uint32]byte // type OID → typcategory
	kinds map[string]byte // quoted relation name → relkind
}

type relInfo struct {
	schema, table string
	kind          byte
	cols          map[int16]string
}

func newCatalog(config func(string) (*pgconn.Config, error), log *slog.Logger) *catalog {
	return &catalog{config: config, log: log, rels: make(map[uint32]*relInfo), types: make(map[uint32]byte), kinds: make(map[string]byte)}
}

// column is one resolved source column.
type column struct {
	schema, table, name string
	relKind             byte
}

// resolve looks up every (table OID, attnum) in keys. Unknown relations are fetched
// once; what is still unknown afterwards (or when the catalog cannot be reached) is
// reported as not found, and the masker decides (failing closed).
func (c *catalog) resolve(ctx context.Context, keys []colKey, typeOIDs []uint32) ([]column, []bool, map[uint32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var missingRels, missingTypes []uint32
	seen := map[uint32]bool{}
	for _, k := range keys {
		if k.table == 0 || seen[k.table] {
			continue
		}
		seen[k.table] = true
		if r, ok := c.rels[k.table]; !ok || r.cols[k.attnum] == "" {
			missingRels = append(missingRels, k.table)
		}
	}
	for _, t := range typeOIDs {
		if t < firstNormalOID {
			continue // built-in: builtinTextLike knows it
		}
		if _, ok := c.types[t]; !ok && !seen[t|1<<31] {
			seen[t|1<<31] = true
			missingTypes = append(missingTypes, t)
		}
	}
	if len(missingRels)+len(missingTypes) > 0 {
		if err := c.fetch(ctx, missingRels, missingTypes); err != nil {
			c.log.Warn("catalog lookup failed; fields stay unresolved", "err", err)
		}
	}
	cols := make([]column, len(keys))
	found := make([]bool, len(keys))
	for i, k := range keys {
		r, ok := c.rels[k.table]
		if !ok {
			continue
		}
		name, ok := r.cols[k.attnum]
		if !ok {
			continue
		}
		cols[i] = column{schema: r.schema, table: r.table, name: name, relKind: r.kind}
		found[i] = true
	}
	cats := make(map[uint32]byte, len(typeOIDs))
	for _, t := range typeOIDs {
		if cat, ok := c.types[t]; ok {
			cats[t] = cat
		}
	}
	return cols, found, cats
}

type colKey struct {
	table  uint32
	attnum int16
}

const relQuery = `SELECT a.attrelid, a.attnum, n.nspname, c.relname, a.attname, c.relkind
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attrelid = ANY($1::pg_catalog.oid[]) AND a.attnum <> 0 AND NOT a.attisdropped`

const typeQuery = `SELECT t.oid, t.typcategory FROM pg_catalog.pg_type t WHERE t.oid = ANY($1::pg_catalog.oid[])`

// relKinds sets Kind on every relation of lin the catalog can resolve (with the
// session's search_path: clients cannot change it, the guard refuses that).
// Unresolved relations keep Kind 0 and the masker treats them as possible views.
func (c *catalog) relKinds(ctx context.Context, rels []mask.Relation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range rels {
		name := rels[i].QuotedName()
		if k, ok := c.kinds[name]; ok {
			rels[i].Kind = k
			continue
		}
		if err := c.connect(ctx); err != nil {
			c.log.Warn("catalog lookup failed; relation kinds stay unresolved", "err", err)
			return
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res := c.pg.ExecParams(qctx, mask.RelKindQuery, [][]byte{[]byte(name)}, nil, nil, nil).Read()
		cancel()
		if res.Err != nil {
			c.log.Warn("catalog relkind lookup failed", "err", res.Err)
			continue
		}
		if len(res.Rows) == 1 && len(res.Rows[0]) == 1 && len(res.Rows[0][0]) == 1 {
			rels[i].Kind = res.Rows[0][0][0]
			c.kinds[name] = rels[i].Kind
		}
	}
}

func (c *catalog) connect(ctx context.Context) error {
	if c.pg != nil && !c.pg.IsClosed() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg, err := c.config("/catalog")
	if err != nil {
		return err
	}
	pg, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: catalog connect: %w", err)
	}
	c.pg = pg
	return nil
}

func (c *catalog) fetch(ctx context.Context, rels, types []uint32) error {
	if err := c.connect(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if len(rels) > 0 {
		res := c.pg.ExecParams(ctx, relQuery, [][]byte{oidArray(rels)}, nil, nil, nil).Read()
		if res.Err != nil {
			return fmt.Errorf("postgres: catalog: %w", res.Err)
		}
		for _, row := range res.Rows {
			if len(row) != 6 {
				continue
			}
			oid, err1 := strconv.ParseUint(string(row[0]), 10, 32)
			att, err2 := strconv.ParseInt(string(row[1]), 10, 16)
			if err1 != nil || err2 != nil || len(row[5]) != 1 {
				continue
			}
			r := c.rels[uint32(oid)]
			if r == nil {
				r = &relInfo{schema: string(row[2]), table: string(row[3]), kind: row[5][0], cols: map[int16]string{}}
				c.rels[uint32(oid)] = r
			}
			r.cols[int16(att)] = string(row[4])
		}
	}
	if len(types) > 0 {
		res := c.pg.ExecParams(ctx, typeQuery, [][]byte{oidArray(types)}, nil, nil, nil).Read()
		if res.Err != nil {
			return fmt.Errorf("postgres: catalog: %w", res.Err)
		}
		for _, row := range res.Rows {
			if len(row) != 2 || len(row[1]) != 1 {
				continue
			}
			oid, err := strconv.ParseUint(string(row[0]), 10, 32)
			if err != nil {
				continue
			}
			c.types[uint32(oid)] = row[1][0]
		}
	}
	return nil
}

func oidArray(oids []uint32) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, o := range oids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(o), 10))
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// close closes the catalog connection (the cache stays).
func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.pg.Close(ctx)
		cancel()
		c.pg = nil
	}
}

// firstNormalOID is PostgreSQL's FirstNormalObjectId: OIDs below are built in.
const firstNormalOID = 16384

// builtinTextLike lists the built-in types whose text and binary forms are the same
// character string: their values can be masked as text in either format.
var builtinTextLike = map[uint32]bool{
	18:   true, // char
	19:   true, // name
	25:   true, // text
	705:  true, // unknown
	1042: true, // bpchar
	1043: true, // varchar
}

// textLike reports whether type oid is text-like: a built-in text type or a type in
// the string category (citext, domains over text when reported as such).
func textLike(oid uint32, cats map[uint32]byte) bool {
	if builtinTextLike[oid] {
		return true
	}
	return cats[oid] == 'S'
}
