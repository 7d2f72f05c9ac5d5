# One customer-managed key encrypts the grants table, the recordings bucket,
# the policy object, the functions' environment and the log groups.
resource "aws_kms_key" "main" {
  description             = "jitgate ${var.name}: grants, recordings, audit, logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*${var.name}*"]
    }
  }
}

# Recordings are signed with an asymmetric key the runner and the session
# task may only Sign with: the private half never leaves KMS. ECDSA P-256
# (ECDSA_SHA_256) is available everywhere KMS is; auditors verify offline with
# the public key (`jitgate recording verify --kms-key ARN`, or its PEM).
resource "aws_kms_key" "recording_signing" {
  description              = "jitgate ${var.name}: recording signatures"
  key_usage                = "SIGN_VERIFY"
  customer_master_key_spec = "ECC_NIST_P256"
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.recording_signing.json
  tags                     = local.tags
}

resource "aws_kms_alias" "recording_signing" {
  name          = "alias/${var.name}-recording-signing"
  target_key_id = aws_kms_key.recording_signing.key_id
}

data "aws_iam_policy_document" "recording_signing" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
}
