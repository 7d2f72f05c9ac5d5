// Package dynamo is the grant store of the AWS deployment: a grant.Store over
// one DynamoDB table, shared by every broker Lambda invocation, the exec runner
// and the sweeper. It sits where broker/store/bolt sits locally: the broker
// reads and writes every grant through it, from the policy decision to
// revocation, and it passes the same contract suite (broker/store/storetest).
//
// Every write is conditional. Create puts an item only if the id is free;
// Update reads the item with a strongly consistent read, runs fn on a copy,
// checks the result with grant.CheckUpdate and puts it back only if the
// version is still the one read, retrying with backoff when another writer got
// in between. Two approvers, or an approver and a sweeper, therefore get one
// outcome, never a lost update.
//
// A grant is stored as its JSON (gzipped when large) plus the attributes the
// table's indexes need: by_state (pending grants for approvers and the sweeper,
// active grants for the sweeper) and by_requester. Grants in a terminal state
// carry a TTL attribute, so DynamoDB deletes them after Config.Retention; the
// audit log and the recordings, not the grant table, are the long-term evidence.
//
//	st, err := dynamo.New(dynamo.Config{Client: dynamodb.NewFromConfig(awsCfg), Table: "jitgate-grants"})
//	g, err := st.Update(ctx, id, func(g *grant.Grant) error { return g.Transition(grant.Approved, now) })
//
// Lists through an index are eventually consistent in DynamoDB (a grant that
// just changed state can take a moment to appear under its new state); every
// grant they return is re-read with a consistent read and filtered again, so a
// stale index entry never returns a grant in the wrong state.
package dynamo

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jitgate/jitgate/broker/grant"
)

// API is the part of the DynamoDB client the store uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
}

// Defaults of Config.
const (
	DefaultRetention   = 90 * 24 * time.Hour
	DefaultMaxAttempts = 12
)

// gzipAbove is the JSON size above which a grant is stored gzipped; DynamoDB
// items are limited to 400 KB and an exec grant's operation may be 1 MiB.
const (
	gzipAbove   = 64 << 10
	maxItemSize = 380 << 10
)

// Config configures a Store.
type Config struct {
	// Client is a DynamoDB client (dynamodb.NewFromConfig). For LocalStack or
	// moto, set BaseEndpoint on its aws.Config. Required.
	Client API
	// Table is the table name (created by Terraform, or by CreateTable). Required.
	Table string
	// Retention is how long a grant in a terminal state is kept before
	// DynamoDB's TTL deletes it; default DefaultRetention. Negative keeps
	// grants forever (no TTL attribute is written).
	Retention time.Duration
	// MaxAttempts bounds the compare-and-swap attempts of one Update before it
	// gives up with grant.ErrConflict; default DefaultMaxAttempts.
	MaxAttempts int
	// Backoff is the base delay between attempts (jittered, doubling up to
	// 32×); default 5ms.
	Backoff time.Duration
	// Now is the store's clock for CreatedAt (when zero) and UpdatedAt;
	// default time.Now.
	Now func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("dynamo: Client is required")
	case c.Table == "":
		return errors.New("dynamo: Table is required")
	case c.MaxAttempts < 0:
		return fmt.Errorf("dynamo: MaxAttempts %d is negative", c.MaxAttempts)
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Backoff <= 0 {
		c.Backoff = 5 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Store is a grant.Store on DynamoDB. It is safe for concurrent use, and any
// number of Stores (in any number of processes) may share one table.
type Store struct {
	cfg    Config
	closed atomic.Bool
}

var _ grant.Store = (*Store)(nil)

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("dynamo: store is closed")

// New checks cfg. It does not contact DynamoDB.
func New(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Store{cfg: cfg}, nil
}

// Table is the table the store reads and writes.
func (s *Store) Table() string { return s.cfg.Table }

// Close marks the store closed; the client is the caller's.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *Store) check(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("dynamo: %s: %w", op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dynamo: %s: %w", op, err)
	}
	return nil
}

func (s *Store) stamp() time.Time { return s.cfg.Now().UTC().Round(0) }

// Create implements grant.Store.
func (s *Store) Create(ctx context.Context, g *grant.Grant) error {
	if err := s.check(ctx, "create"); err != nil {
		return err
	}
	if err := g.ValidateNew(); err != nil {
		return fmt.Errorf("dynamo: create: %w", err)
	}
	c := g.Clone()
	now := s.stamp()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	c.Version = 1
	item, err := s.encode(c)
	if err != nil {
		return fmt.Errorf("dynamo: create %s: %w", c.ID, err)
	}
	_, err = s.cfg.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(s.cfg.Table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#id)"),
		ExpressionAttributeNames: map[string]string{"#id": AttrID},
	})
	if isConditionFailed(err) {
		return fmt.Errorf("%w: %s", grant.ErrExists, c.ID)
	}
	if err != nil {
		return s.mapErr("create", c.ID, err)
	}
	g.CreatedAt, g.UpdatedAt, g.Version = c.CreatedAt, c.UpdatedAt, c.Version
	return nil
}

// Get implements grant.Store with a strongly consistent read.
func (s *Store) Get(ctx context.Context, id string) (*grant.Grant, error) {
	if err := s.check(ctx, "get"); err != nil {
		return nil, err
	}
	return s.get(ctx, id)
}

func (s *Store) get(ctx context.Context, id string) (*grant.Grant, error) {
	if !grant.ValidID(id) {
		return nil, fmt.Errorf("%w: %q", grant.ErrNotFound, id)
	}
	out, err := s.cfg.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.cfg.Table),
		Key:            map[string]types.AttributeValue{AttrID: &types.AttributeValueMemberS{Value: id}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.mapErr("get", id, err)
	}
	if len(out.Item) == 0 {
		return nil, fmt.Errorf("%w: %s", grant.ErrNotFound, id)
	}
	g, err := decode(out.Item)
	if err != nil {
		return nil, fmt.Errorf("dynamo: get %s: %w", id, err)
	}
	if g.ID != id {
		return nil, fmt.Errorf("dynamo: get %s: stored record names grant %q", id, g.ID)
	}
	return g, nil
}

// Update implements grant.Store: a read, fn, and a put conditioned on the
// version read, retried with jittered backoff when another writer won. fn may
// run once per attempt.
func (s *Store) Update(ctx context.Context, id string, fn func(g *grant.Grant) error) (*grant.Grant, error) {
	if err := s.check(ctx, "update"); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		if attempt > 0 {
			if err := s.backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("dynamo: update %s: %w", id, err)
			}
			if s.closed.Load() {
				return nil, fmt.Errorf("dynamo: update: %w", ErrClosed)
			}
		}
		prev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		next := prev.Clone()
		if err := fn(next); err != nil {
			return nil, err
		}
		if err := grant.CheckUpdate(prev, next); err != nil {
			return nil, err
		}
		next.Version = prev.Version + 1
		next.UpdatedAt = s.stamp()
		item, err := s.encode(next)
		if err != nil {
			return nil, fmt.Errorf("dynamo: update %s: %w", id, err)
		}
		_, err = s.cfg.Client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                 aws.String(s.cfg.Table),
			Item:                      item,
			ConditionExpression:       aws.String("#v = :v"),
			ExpressionAttributeNames:  map[string]string{"#v": AttrVersion},
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": number(prev.Version)},
		})
		if isConditionFailed(err) {
			continue // someone else wrote: re-read and re-run fn
		}
		if err != nil {
			return nil, s.mapErr("update", id, err)
		}
		return next, nil
	}
	return nil, fmt.Errorf("%w: %s: still contended after %d attempts", grant.ErrConflict, id, s.cfg.MaxAttempts)
}

func (s *Store) backoff(ctx context.Context, attempt int) error {
	d := s.cfg.Backoff << min(attempt-1, 5)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// List implements grant.Store. A State filter queries by_state, a Requester
// filter by_requester (both newest first); otherwise the table is scanned and
// sorted. Every grant returned comes from a consistent read.
func (s *Store) List(ctx context.Context, f grant.Filter) ([]*grant.Grant, error) {
	if err := s.check(ctx, "list"); err != nil {
		return nil, err
	}
	if f.State != nil && !f.State.Valid() {
		return nil, fmt.Errorf("dynamo: list: invalid state %s", *f.State)
	}
	var out []*grant.Grant
	var err error
	switch {
	case f.State != nil:
		out, err = s.listIndex(ctx, IndexByState, AttrState, f.State.String(), f)
	case f.Requester != "":
		out, err = s.listIndex(ctx, IndexByRequester, AttrRequester, f.Requester, f)
	default:
		out, err = s.scan(ctx, f)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) listIndex(ctx context.Context, index, attr, value string, f grant.Filter) ([]*grant.Grant, error) {
	var out []*grant.Grant
	var start map[string]types.AttributeValue
	for {
		page, err := s.cfg.Client.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(s.cfg.Table),
			IndexName:                 aws.String(index),
			KeyConditionExpression:    aws.String("#k = :k"),
			ExpressionAttributeNames:  map[string]string{"#k": attr},
			ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberS{Value: value}},
			ScanIndexForward:          aws.Bool(false),
			ExclusiveStartKey:         start,
			Limit:                     aws.Int32(100),
		})
		if err != nil {
			return nil, s.mapErr("list", index, err)
		}
		var ids []string
		for _, it := range page.Items {
			id, ok := it[AttrID].(*types.AttributeValueMemberS)
			if !ok {
				return nil, fmt.Errorf("dynamo: list: index %s entry without a string %s", index, AttrID)
			}
			ids = append(ids, id.Value)
		}
		gs, err := s.batchGet(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, id := range ids { // index order: newest first
			g, ok := gs[id]
			if !ok || !f.Match(g) {
				continue // deleted by TTL, or a stale index entry
			}
			out = append(out, g)
			if f.Limit > 0 && len(out) >= f.Limit {
				return out, nil
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		start = page.LastEvaluatedKey
	}
}

// batchGet reads items by id with consistent reads, 100 at a time, retrying
// unprocessed keys.
func (s *Store) batchGet(ctx context.Context, ids []string) (map[string]*grant.Grant, error) {
	out := make(map[string]*grant.Grant, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 100)
		keys := make([]map[string]types.AttributeValue, 0, n)
		for _, id := range ids[:n] {
			keys = append(keys, map[string]types.AttributeValue{AttrID: &types.AttributeValueMemberS{Value: id}})
		}
		ids = ids[n:]
		req := map[string]types.KeysAndAttributes{s.cfg.Table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if attempt >= s.cfg.MaxAttempts {
					return nil, fmt.Errorf("dynamo: list: batch get still throttled after %d attempts", attempt)
				}
				if err := s.backoff(ctx, attempt); err != nil {
					return nil, fmt.Errorf("dynamo: list: %w", err)
				}
			}
			res, err := s.cfg.Client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, s.mapErr("list", "batch get", err)
			}
			for _, it := range res.Responses[s.cfg.Table] {
				g, err := decode(it)
				if err != nil {
					return nil, fmt.Errorf("dynamo: list: %w", err)
				}
				out[g.ID] = g
			}
			req = res.UnprocessedKeys
		}
	}
	return out, nil
}

func (s *Store) scan(ctx context.Context, f grant.Filter) ([]*grant.Grant, error) {
	var out []*grant.Grant
	var start map[string]types.AttributeValue
	for {
		page, err := s.cfg.Client.Scan(ctx, &dynamodb.ScanInput{
			TableName:         aws.String(s.cfg.Table),
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, s.mapErr("list", "scan", err)
		}
		for _, it := range page.Items {
			g, err := decode(it)
			if err != nil {
				return nil, fmt.Errorf("dynamo: list: %w", err)
			}
			if f.Match(g) {
				out = append(out, g)
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		start = page.LastEvaluatedKey
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// encode builds the item for g.
func (s *Store) encode(g *grant.Grant) (map[string]types.AttributeValue, error) {
	doc, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	item := map[string]types.AttributeValue{
		AttrID:        &types.AttributeValueMemberS{Value: g.ID},
		AttrVersion:   number(g.Version),
		AttrState:     &types.AttributeValueMemberS{Value: g.State.String()},
		AttrRequester: &types.AttributeValueMemberS{Value: g.Requester},
		AttrSort:      &types.AttributeValueMemberS{Value: SortKey(g.CreatedAt, g.ID)},
	}
	if g.Target != "" {
		item[AttrTarget] = &types.AttributeValueMemberS{Value: g.Target}
	}
	if len(doc) > gzipAbove {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(doc)
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("encode: gzip: %w", err)
		}
		if b.Len() > maxItemSize {
			return nil, fmt.Errorf("grant is %d bytes gzipped, above what one DynamoDB item holds (%d)", b.Len(), maxItemSize)
		}
		item[AttrDocGzip] = &types.AttributeValueMemberB{Value: b.Bytes()}
	} else {
		item[AttrDoc] = &types.AttributeValueMemberS{Value: string(doc)}
	}
	if g.State.Terminal() && s.cfg.Retention > 0 {
		item[AttrTTL] = number(g.UpdatedAt.Add(s.cfg.Retention).Unix())
	}
	return item, nil
}

// maxDoc bounds a decompressed grant document.
const maxDoc = 8 << 20

func decode(item map[string]types.AttributeValue) (*grant.Grant, error) {
	var doc []byte
	switch {
	case item[AttrDoc] != nil:
		s, ok := item[AttrDoc].(*types.AttributeValueMemberS)
		if !ok {
			return nil, fmt.Errorf("decode: %s is not a string", AttrDoc)
		}
		doc = []byte(s.Value)
	case item[AttrDocGzip] != nil:
		b, ok := item[AttrDocGzip].(*types.AttributeValueMemberB)
		if !ok {
			return nil, fmt.Errorf("decode: %s is not binary", AttrDocGzip)
		}
		zr, err := gzip.NewReader(bytes.NewReader(b.Value))
		if err != nil {
			return nil, fmt.Errorf("decode: gunzip: %w", err)
		}
		doc, err = io.ReadAll(io.LimitReader(zr, maxDoc+1))
		if err != nil || len(doc) > maxDoc {
			return nil, fmt.Errorf("decode: gunzip: %v (%d bytes)", err, len(doc))
		}
	default:
		return nil, fmt.Errorf("decode: item has neither %s nor %s", AttrDoc, AttrDocGzip)
	}
	g := new(grant.Grant)
	if err := json.Unmarshal(doc, g); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	// The attributes the conditions and indexes use must agree with the document.
	id, _ := item[AttrID].(*types.AttributeValueMemberS)
	st, _ := item[AttrState].(*types.AttributeValueMemberS)
	ver, _ := item[AttrVersion].(*types.AttributeValueMemberN)
	switch {
	case id == nil || id.Value != g.ID || !grant.ValidID(g.ID):
		return nil, fmt.Errorf("decode: id attribute does not match the document (%q)", g.ID)
	case !g.State.Valid() || st == nil || st.Value != g.State.String():
		return nil, fmt.Errorf("decode %s: state attribute does not match the document (%s)", g.ID, g.State)
	case ver == nil || ver.Value != strconv.FormatInt(g.Version, 10):
		return nil, fmt.Errorf("decode %s: version attribute does not match the document (%d)", g.ID, g.Version)
	}
	return g, nil
}

// SortKey is the value of AttrSort: a fixed-width decimal of the creation time
// (order-preserving, before 1970 included), "#", and the id.
func SortKey(created time.Time, id string) string {
	return fmt.Sprintf("%020d#%s", uint64(created.UnixNano())^(1<<63), id)
}

func number(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// mapErr is the one place SDK errors become store errors. Context errors stay
// recognisable with errors.Is; a missing table is named.
func (s *Store) mapErr(op, what string, err error) error {
	switch {
	case IsNotFound(err):
		return fmt.Errorf("dynamo: %s %s: table %s (or its index) does not exist: %w", op, what, s.cfg.Table, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("dynamo: %s %s: %w", op, what, err)
	}
	var thr *types.ProvisionedThroughputExceededException
	var rle *types.RequestLimitExceeded
	var te *types.ThrottlingException
	if errors.As(err, &thr) || errors.As(err, &rle) || errors.As(err, &te) {
		return fmt.Errorf("dynamo: %s %s: throttled by DynamoDB: %w", op, what, err)
	}
	return fmt.Errorf("dynamo: %s %s: %w", op, what, err)
}
