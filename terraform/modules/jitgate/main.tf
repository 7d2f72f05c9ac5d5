# jitgate on AWS: the broker API, the exec runner and the sweeper as Lambda
# functions, grants in DynamoDB, recordings and audit segments in an S3 bucket
# with versioning, SSE-KMS and object lock, session proxies as Fargate tasks.
# See README in the repository and functions/internal/deploy for what each
# environment variable means.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  table_name  = "${var.name}-grants"
  bucket_name = "${var.name}-recordings-${local.account}-${local.region}"
  functions   = toset(["api", "runner", "sweeper"])

  # Built from its name, not read from the resource: the API's policy and
  # environment name the runner, and all three are one for_each resource.
  runner_arn = "arn:${local.partition}:lambda:${local.region}:${local.account}:function:${var.name}-runner"

  recording_prefix = "recordings/"
  audit_prefix     = "audit/"
  config_prefix    = "config/"

  # What every function and the session task share.
  common_environment = {
    JITGATE_TABLE            = aws_dynamodb_table.grants.name
    JITGATE_BUCKET           = aws_s3_bucket.recordings.bucket
    JITGATE_RECORDING_PREFIX = local.recording_prefix
    JITGATE_AUDIT_PREFIX     = local.audit_prefix
    JITGATE_KMS_KEY_ID       = aws_kms_key.main.arn
    JITGATE_OBJECT_LOCK_MODE = lower(var.object_lock_mode)
    JITGATE_OBJECT_LOCK_DAYS = tostring(var.retention_days)
    VAULT_ADDR               = var.vault_addr
  }

  # The broker (API and sweeper): policy, Vault token, launchers.
  broker_environment = merge(local.common_environment, {
    JITGATE_POLICY_URI          = "s3://${aws_s3_bucket.recordings.bucket}/${aws_s3_object.policy.key}"
    JITGATE_RUNNER_FUNCTION     = local.runner_arn
    JITGATE_ECS_CLUSTER         = aws_ecs_cluster.sessions.arn
    JITGATE_ECS_TASK_DEFINITION = aws_ecs_task_definition.session.arn
    JITGATE_ECS_CONTAINER       = "proxy"
    JITGATE_ECS_SUBNETS         = join(",", var.session_subnet_ids)
    JITGATE_ECS_SECURITY_GROUPS = aws_security_group.sessions.id
    JITGATE_ECS_PORT            = tostring(var.session_port)
    }, var.vault_token == "" ? {} : { VAULT_TOKEN = var.vault_token },
  var.extra_environment)

  # The runner and the session task sign recordings with the signing key.
  runner_environment = merge(local.common_environment, {
    JITGATE_RECORDING_SIGNING_KEY = aws_kms_key.recording_signing.arn
  }, var.extra_environment)

  tags = merge({ "app" = "jitgate", "jitgate:deployment" = var.name }, var.tags)
}
