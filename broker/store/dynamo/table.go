package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table layout. terraform/modules/jitgate declares the same table; the
// Terraform test checks that both agree.
const (
	// AttrID is the partition key: the grant id.
	AttrID = "id"
	// AttrVersion is the compare-and-swap counter (grant.Grant.Version).
	AttrVersion = "version"
	// AttrState is the state name; the partition key of IndexByState.
	AttrState = "state"
	// AttrRequester is the requester's identity key; the partition key of IndexByRequester.
	AttrRequester = "requester"
	// AttrTarget is the target name (filtered, not indexed).
	AttrTarget = "target"
	// AttrSort orders both indexes newest-last: a fixed-width creation time
	// then "#" and the id, so ties sort by id.
	AttrSort = "created_id"
	// AttrDoc holds the grant as JSON; AttrDocGzip holds it gzipped when it is large.
	AttrDoc     = "doc"
	AttrDocGzip = "doc_gz"
	// AttrTTL is the DynamoDB TTL attribute (epoch seconds), set only on
	// grants in a terminal state.
	AttrTTL = "expires_at"

	// IndexByState lists grants in one state (pending for approvers and the
	// sweeper, active for the sweeper).
	IndexByState = "by_state"
	// IndexByRequester lists one requester's grants.
	IndexByRequester = "by_requester"
)

// TableAPI is what CreateTable needs.
type TableAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// CreateTable creates the grants table (on-demand billing, both indexes, TTL on
// AttrTTL) and waits until it is active. Production tables come from Terraform;
// this is for tests, LocalStack and moto. An existing table is an error.
func CreateTable(ctx context.Context, c TableAPI, name string) error {
	keys := func(pk string) []types.KeySchemaElement {
		return []types.KeySchemaElement{
			{AttributeName: aws.String(pk), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSort), KeyType: types.KeyTypeRange},
		}
	}
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrID), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrState), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrRequester), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSort), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(AttrID), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String(IndexByState), KeySchema: keys(AttrState), Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}},
			{IndexName: aws.String(IndexByRequester), KeySchema: keys(AttrRequester), Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}},
		},
		SSESpecification: &types.SSESpecification{Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("dynamo: create table %s: %w", name, err)
	}
	for {
		out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("dynamo: describe table %s: %w", name, err)
		}
		if out.Table != nil && out.Table.TableStatus == types.TableStatusActive {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dynamo: wait for table %s: %w", name, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	_, err = c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrTTL), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("dynamo: enable ttl on %s: %w", name, err)
	}
	return nil
}

// IsNotFound reports whether err says the table (or index) does not exist.
func IsNotFound(err error) bool {
	var rnf *types.ResourceNotFoundException
	return errors.As(err, &rnf)
}
