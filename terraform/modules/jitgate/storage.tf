# Grants: one item per grant (broker/store/dynamo), conditional writes on
# "version", indexes for pending/active grants and for a requester's grants,
# TTL on finished grants. Keep in step with broker/store/dynamo/table.go.
resource "aws_dynamodb_table" "grants" {
  name                        = local.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "id"
    type = "S"
  }
  attribute {
    name = "state"
    type = "S"
  }
  attribute {
    name = "requester"
    type = "S"
  }
  attribute {
    name = "created_id"
    type = "S"
  }

  global_secondary_index {
    name            = "by_state"
    hash_key        = "state"
    range_key       = "created_id"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name            = "by_requester"
    hash_key        = "requester"
    range_key       = "created_id"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }

  tags = local.tags
}

# Recordings (recordings/), audit log segments (audit/) and the policy
# (config/): versioned, SSE-KMS, object lock, never public.
resource "aws_s3_bucket" "recordings" {
  bucket              = local.bucket_name
  object_lock_enabled = true
  force_destroy       = var.bucket_force_destroy
  tags                = local.tags
}

resource "aws_s3_bucket_ownership_controls" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "recordings" {
  bucket                  = aws_s3_bucket.recordings.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_object_lock_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.recordings]
}

resource "aws_s3_bucket_lifecycle_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  rule {
    id     = "expire-superseded-versions"
    status = "Enabled"
    filter {
      prefix = ""
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {
      prefix = ""
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.recordings]
}

resource "aws_s3_bucket_policy" "recordings" {
  count      = var.bucket_policy_denies ? 1 : 0
  bucket     = aws_s3_bucket.recordings.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.recordings]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.recordings.arn, "${aws_s3_bucket.recordings.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyUnencryptedUploads"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.recordings.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
  }
}

resource "aws_s3_object" "policy" {
  bucket                 = aws_s3_bucket.recordings.id
  key                    = "${local.config_prefix}policy.yaml"
  content                = var.policy_yaml
  content_type           = "application/yaml"
  server_side_encryption = "aws:kms"
  kms_key_id             = aws_kms_key.main.arn
  # The policy changes with deployments: it is not evidence, so it is not
  # retained by the bucket's default lock beyond its version history.
  object_lock_legal_hold_status = "OFF"
  tags                          = local.tags

  depends_on = [
    aws_s3_bucket_versioning.recordings,
    aws_s3_bucket_server_side_encryption_configuration.recordings,
  ]
}
