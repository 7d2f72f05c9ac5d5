#!/bin/bash
# LocalStack init hook (ready stage): creates the grants table and the
# recordings bucket jitgate needs, with the same layout as
# terraform/modules/jitgate and broker/store/dynamo, for users who try the
# functions without running Terraform. Idempotent.
set -euo pipefail
TABLE=${JITGATE_TABLE:-jitgate-local-grants}
BUCKET=${JITGATE_BUCKET:-jitgate-local-recordings}

if ! awslocal dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
  awslocal dynamodb create-table --table-name "$TABLE" --billing-mode PAY_PER_REQUEST \
    --attribute-definitions AttributeName=id,AttributeType=S AttributeName=state,AttributeType=S \
      AttributeName=requester,AttributeType=S AttributeName=created_id,AttributeType=S \
    --key-schema AttributeName=id,KeyType=HASH \
    --global-secondary-indexes \
      'IndexName=by_state,KeySchema=[{AttributeName=state,KeyType=HASH},{AttributeName=created_id,KeyType=RANGE}],Projection={ProjectionType=KEYS_ONLY}' \
      'IndexName=by_requester,KeySchema=[{AttributeName=requester,KeyType=HASH},{AttributeName=created_id,KeyType=RANGE}],Projection={ProjectionType=KEYS_ONLY}' >/dev/null
  awslocal dynamodb update-time-to-live --table-name "$TABLE" \
    --time-to-live-specification Enabled=true,AttributeName=expires_at >/dev/null
  echo "jitgate: created table $TABLE"
fi

if ! awslocal s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
  awslocal s3api create-bucket --bucket "$BUCKET" --object-lock-enabled-for-bucket >/dev/null
  awslocal s3api put-public-access-block --bucket "$BUCKET" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  echo "jitgate: created bucket $BUCKET (versioned, object lock)"
fi
