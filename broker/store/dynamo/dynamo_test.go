package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/store/dynamo"
	"github.com/jitgate/jitgate/broker/store/storetest"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/awstest"
)

// shared is one moto server for the package's tests; each test uses its own
// bucket or table on it.
var shared *awstest.Server

func TestMain(m *testing.M) {
	srv, err := awstest.StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = srv
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}

var tableSeq atomic.Int64

// newTable creates a fresh table on srv and returns a client and its name.
func newTable(t *testing.T, c *dynamodb.Client) string {
	t.Helper()
	name := fmt.Sprintf("grants-%d", tableSeq.Add(1))
	if err := dynamo.CreateTable(t.Context(), c, name); err != nil {
		t.Fatal(err)
	}
	return name
}

func open(t *testing.T, c *dynamodb.Client, table string, mod ...func(*dynamo.Config)) *dynamo.Store {
	t.Helper()
	cfg := dynamo.Config{Client: c, Table: table}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := dynamo.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(shared.Config())
	storetest.Run(t, func(t *testing.T) grant.Store {
		return open(t, c, newTable(t, c))
	}, storetest.WithReopen(func(t *testing.T, old grant.Store) grant.Store {
		return open(t, c, old.(*dynamo.Store).Table())
	}))
}

var base = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newGrant(requester string, created time.Time) *grant.Grant {
	op := "SELECT 1"
	return &grant.Grant{
		ID: grant.NewID(), Requester: requester, Target: "db", Protocol: spec.Postgres, Mode: spec.Exec,
		Access: spec.Read, Operation: op, OperationHash: grant.HashOperation(op), State: grant.Pending,
		CreatedAt: created, PendingUntil: created.Add(time.Hour), TTL: time.Minute,
	}
}

func rawItem(t *testing.T, c *dynamodb.Client, table, id string) map[string]types.AttributeValue {
	t.Helper()
	out, err := c.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String(table),
		Key: map[string]types.AttributeValue{dynamo.AttrID: &types.AttributeValueMemberS{Value: id}}, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

// TestTTLOnlyOnTerminalGrants: a finished grant carries the TTL attribute
// (UpdatedAt + Retention); a live one never does, so DynamoDB cannot delete a
// grant that is still pending or active.
func TestTTLOnlyOnTerminalGrants(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(shared.Config())
	table := newTable(t, c)
	now := base.Add(time.Hour)
	st := open(t, c, table, func(cfg *dynamo.Config) { cfg.Now = func() time.Time { return now }; cfg.Retention = 48 * time.Hour })
	forever := open(t, c, table, func(cfg *dynamo.Config) { cfg.Retention = -1 })
	ctx := t.Context()

	g := newGrant("okta|alice", base)
	if err := st.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		to      grant.State
		wantTTL bool
	}{{grant.Approved, false}, {grant.Active, false}, {grant.Ended, true}}
	for _, step := range steps {
		if _, err := st.Update(ctx, g.ID, func(g *grant.Grant) error { return g.Transition(step.to, now) }); err != nil {
			t.Fatal(err)
		}
		item := rawItem(t, c, table, g.ID)
		ttl, has := item[dynamo.AttrTTL].(*types.AttributeValueMemberN)
		if has != step.wantTTL {
			t.Fatalf("state %s: TTL attribute present=%v, want %v", step.to, has, step.wantTTL)
		}
		if has {
			if want := strconv.FormatInt(now.Add(48*time.Hour).Unix(), 10); ttl.Value != want {
				t.Errorf("TTL %s, want %s (UpdatedAt + Retention)", ttl.Value, want)
			}
		}
		if s := item[dynamo.AttrState].(*types.AttributeValueMemberS).Value; s != step.to.String() {
			t.Errorf("state attribute %q, want %q", s, step.to)
		}
	}
	// Negative retention: terminal grants are kept forever.
	d := &grant.Grant{ID: grant.NewID(), Requester: "okta|mallory", State: grant.Denied, CreatedAt: base}
	if err := forever.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, has := rawItem(t, c, table, d.ID)[dynamo.AttrTTL]; has {
		t.Error("Retention < 0 still wrote a TTL attribute")
	}
}

// TestLargeOperationIsCompressed: an exec grant's SQL may be up to 1 MiB, more
// than one DynamoDB item holds; it is stored gzipped and reads back intact.
func TestLargeOperationIsCompressed(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(shared.Config())
	table := newTable(t, c)
	st := open(t, c, table)
	ctx := t.Context()
	g := newGrant("okta|alice", base)
	g.Operation = "SELECT 1 WHERE 'x' IN (" + strings.Repeat("'abcdefgh',", 90_000) + "'z')"
	g.OperationHash = grant.HashOperation(g.Operation)
	if err := st.Create(ctx, g); err != nil {
		t.Fatalf("Create of a %d-byte operation: %v", len(g.Operation), err)
	}
	item := rawItem(t, c, table, g.ID)
	if _, ok := item[dynamo.AttrDocGzip].(*types.AttributeValueMemberB); !ok {
		t.Fatalf("a %d-byte grant was not stored gzipped", len(g.Operation))
	}
	got, err := st.Get(ctx, g.ID)
	if err != nil || got.Operation != g.Operation || got.OperationHash != g.OperationHash {
		t.Fatalf("Get: %v (operation intact: %v)", err, got != nil && got.Operation == g.Operation)
	}
	out, err := st.Update(ctx, g.ID, func(g *grant.Grant) error { return g.Transition(grant.Approved, base) })
	if err != nil || out.Operation != g.Operation {
		t.Fatalf("Update of a compressed grant: %v", err)
	}
}

// TestTamperedItemIsRefused: the indexed attributes and the document must
// agree; an item whose state attribute says "approved" while its document
// says "pending" (a hand edit, a bug) is refused, not trusted either way.
func TestTamperedItemIsRefused(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(shared.Config())
	table := newTable(t, c)
	st := open(t, c, table)
	ctx := t.Context()
	g := newGrant("okta|alice", base)
	if err := st.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		attr string
		val  types.AttributeValue
		want string
	}{
		{dynamo.AttrState, &types.AttributeValueMemberS{Value: "approved"}, "state attribute does not match"},
		{dynamo.AttrVersion, &types.AttributeValueMemberN{Value: "7"}, "version attribute does not match"},
		{dynamo.AttrDoc, &types.AttributeValueMemberS{Value: `{"id":"` + g.ID + `","state":"bogus"}`}, "decode"},
	}
	orig := rawItem(t, c, table, g.ID)
	for _, tc := range tests {
		item := map[string]types.AttributeValue{}
		for k, v := range orig {
			item[k] = v
		}
		item[tc.attr] = tc.val
		if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, g.ID); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tampered %s: Get err %v, want %q", tc.attr, err, tc.want)
		}
		if _, err := st.Update(ctx, g.ID, func(g *grant.Grant) error { return g.Transition(grant.Approved, base) }); err == nil {
			t.Errorf("tampered %s: Update succeeded", tc.attr)
		}
	}
}

// TestStaleIndexEntryIsFilteredOut: List by state re-reads every grant; an
// index entry that still says "pending" for a grant that moved on is dropped.
func TestStaleIndexEntryIsFilteredOut(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(shared.Config())
	table := newTable(t, c)
	st := open(t, c, table)
	ctx := t.Context()
	g := newGrant("okta|alice", base)
	if err := st.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(ctx, g.ID, func(g *grant.Grant) error { return g.Transition(grant.Approved, base) }); err != nil {
		t.Fatal(err)
	}
	// Simulate index lag: a second, keys-only item under by_state "pending"
	// naming the same grant id cannot exist in one table, so lag is modelled
	// by a wrapper whose Query answers with the old entry.
	lagging := &laggingIndex{API: c, id: g.ID}
	ls := open(t, nil, table, func(cfg *dynamo.Config) { cfg.Client = lagging })
	pending := grant.Pending
	got, err := ls.List(ctx, grant.Filter{State: &pending})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("List(pending) returned %s in state %s from a stale index entry", got[0].ID, got[0].State)
	}
	if lagging.queried.Load() == 0 {
		t.Error("List(pending) did not query the by_state index")
	}
}

type laggingIndex struct {
	dynamo.API
	id      string
	queried atomic.Int32
}

func (l *laggingIndex) Query(ctx context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	l.queried.Add(1)
	return &dynamodb.QueryOutput{Items: []map[string]types.AttributeValue{{
		dynamo.AttrID: &types.AttributeValueMemberS{Value: l.id}, dynamo.AttrState: &types.AttributeValueMemberS{Value: "pending"},
	}}}, nil
}

// TestConflictSurfacesWhenRetriesRunOut: with one attempt, a writer that loses
// the compare-and-swap gets ErrConflict and its change is not written.
func TestConflictSurfacesWhenRetriesRunOut(t *testing.T) {
	t.Parallel()
	c := dynamodb.NewFromConfig(shared.Config())
	table := newTable(t, c)
	st := open(t, c, table, func(cfg *dynamo.Config) { cfg.MaxAttempts = 1 })
	other := open(t, c, table)
	ctx := t.Context()
	g := newGrant("okta|alice", base)
	if err := st.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	_, err := st.Update(ctx, g.ID, func(gg *grant.Grant) error {
		// Another broker approves between our read and our write.
		if _, err := other.Update(ctx, g.ID, func(x *grant.Grant) error { return x.Transition(grant.Approved, base) }); err != nil {
			t.Errorf("interleaved update: %v", err)
		}
		return gg.Transition(grant.Expired, base)
	})
	if !errors.Is(err, grant.ErrConflict) {
		t.Fatalf("losing writer: err %v, want ErrConflict", err)
	}
	if got, _ := other.Get(ctx, g.ID); got.State != grant.Approved || got.Version != 2 {
		t.Errorf("after the conflict: %s v%d, want approved v2 (the winner's write)", got.State, got.Version)
	}
}

func TestMissingTableIsNamed(t *testing.T) {
	t.Parallel()
	st := open(t, dynamodb.NewFromConfig(shared.Config()), "no-such-table")
	_, err := st.Get(t.Context(), grant.NewID())
	if err == nil || !strings.Contains(err.Error(), "table no-such-table (or its index) does not exist") {
		t.Errorf("Get on a missing table: %v", err)
	}
}

func TestConfigRefusals(t *testing.T) {
	t.Parallel()
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1"})
	for _, tc := range []struct {
		cfg  dynamo.Config
		want string
	}{
		{dynamo.Config{Table: "t"}, "Client is required"},
		{dynamo.Config{Client: c}, "Table is required"},
		{dynamo.Config{Client: c, Table: "t", MaxAttempts: -1}, "MaxAttempts -1 is negative"},
	} {
		if _, err := dynamo.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestSortKeyOrdersByTime(t *testing.T) {
	t.Parallel()
	times := []time.Time{
		time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0), base, base.Add(time.Nanosecond), base.Add(100 * 365 * 24 * time.Hour),
	}
	for i := 1; i < len(times); i++ {
		a, b := dynamo.SortKey(times[i-1], "g_b"), dynamo.SortKey(times[i], "g_a")
		if !(a < b) || len(a) != len(b) {
			t.Errorf("SortKey(%v) = %s !< SortKey(%v) = %s", times[i-1], a, times[i], b)
		}
	}
	if a, b := dynamo.SortKey(base, "g_a"), dynamo.SortKey(base, "g_b"); !(a < b) {
		t.Errorf("ties are not ordered by id: %s, %s", a, b)
	}
}
