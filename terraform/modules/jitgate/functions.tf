resource "aws_cloudwatch_log_group" "fn" {
  for_each          = local.functions
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
  tags              = local.tags
}

resource "aws_security_group" "lambda" {
  count       = length(var.lambda_subnet_ids) > 0 ? 1 : 0
  name        = "${var.name}-functions"
  description = "jitgate functions: outbound only (Vault, targets, AWS APIs)"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_egress_rule" "lambda" {
  count             = length(var.lambda_subnet_ids) > 0 ? 1 : 0
  security_group_id = aws_security_group.lambda[0].id
  description       = "Vault, targets and AWS APIs"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

locals {
  vault_login = { for f in ["api", "sweeper"] : f => var.vault_aws_auth.enabled ? {
    JITGATE_VAULT_AWS_ROLE  = "${var.name}-${f}"
    JITGATE_VAULT_AWS_MOUNT = var.vault_aws_auth.mount
    JITGATE_VAULT_SERVER_ID = var.vault_aws_auth.server_id
  } : {} }

  fn_settings = {
    api     = { memory = var.api_memory_mb, timeout = 60, environment = merge(local.broker_environment, local.vault_login["api"]) }
    runner  = { memory = var.runner_memory_mb, timeout = var.runner_timeout_seconds, environment = local.runner_environment }
    sweeper = { memory = 512, timeout = 120, environment = merge(local.broker_environment, local.vault_login["sweeper"]) }
  }
}

resource "aws_lambda_function" "fn" {
  for_each = local.functions

  function_name    = "${var.name}-${each.key}"
  role             = aws_iam_role.fn[each.key].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = "${var.artifacts_dir}/${each.key}.zip"
  source_code_hash = filebase64sha256("${var.artifacts_dir}/${each.key}.zip")
  memory_size      = local.fn_settings[each.key].memory
  timeout          = local.fn_settings[each.key].timeout
  kms_key_arn      = aws_kms_key.main.arn

  environment {
    variables = local.fn_settings[each.key].environment
  }

  dynamic "vpc_config" {
    for_each = contains(local.vpc_lambdas, each.key) ? [1] : []
    content {
      subnet_ids         = var.lambda_subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.fn[each.key].name
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy.fn, aws_cloudwatch_log_group.fn]
}

resource "aws_lambda_function_url" "api" {
  function_name      = aws_lambda_function.fn["api"].function_name
  authorization_type = var.function_url_auth_type
}

# The sweeper's schedule.
resource "aws_cloudwatch_event_rule" "sweeper" {
  name                = "${var.name}-sweeper"
  description         = "jitgate sweeper: expire, revoke, stop orphaned session tasks"
  schedule_expression = var.sweeper_schedule
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "sweeper" {
  rule = aws_cloudwatch_event_rule.sweeper.name
  arn  = aws_lambda_function.fn["sweeper"].arn
}

resource "aws_lambda_permission" "sweeper" {
  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["sweeper"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweeper.arn
}
