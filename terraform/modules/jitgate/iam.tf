# Least privilege, one role per function and one for the session task: each
# gets exactly the table, bucket prefixes, key and APIs its code calls.

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each           = local.functions
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.functions
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.fn[each.key].id
  policy   = data.aws_iam_policy_document.fn[each.key].json
}

locals {
  table_arns   = [aws_dynamodb_table.grants.arn, "${aws_dynamodb_table.grants.arn}/index/*"]
  cluster_cond = aws_ecs_cluster.sessions.arn
  log_arn      = { for f in local.functions : f => "${aws_cloudwatch_log_group.fn[f].arn}:*" }
  vpc_lambdas  = length(var.lambda_subnet_ids) > 0 ? toset(["api", "runner"]) : toset([])

  # Per function: which grant-table calls, which bucket prefixes it writes
  # (with retention) and reads, and what else it may do.
  table_actions = {
    api     = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem"]
    sweeper = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem"]
    runner  = ["dynamodb:GetItem"]
  }
  write_prefixes = {
    api     = [local.audit_prefix]
    sweeper = [local.audit_prefix]
    runner  = [local.recording_prefix]
  }
  read_prefixes = {
    api     = [local.config_prefix, local.audit_prefix]
    sweeper = [local.config_prefix, local.audit_prefix]
    runner  = [local.recording_prefix]
  }
}

data "aws_iam_policy_document" "fn" {
  for_each = local.functions

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_arn[each.key]]
  }

  statement {
    sid       = "Grants"
    actions   = local.table_actions[each.key]
    resources = local.table_arns
  }

  statement {
    sid       = "WriteEvidence"
    actions   = ["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"]
    resources = [for p in local.write_prefixes[each.key] : "${aws_s3_bucket.recordings.arn}/${p}*"]
  }

  statement {
    sid       = "ReadBack"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention"]
    resources = [for p in local.read_prefixes[each.key] : "${aws_s3_bucket.recordings.arn}/${p}*"]
  }

  statement {
    sid       = "Key"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }

  dynamic "statement" {
    for_each = each.key == "runner" ? [1] : []
    content {
      sid       = "SignRecordings"
      actions   = ["kms:Sign", "kms:GetPublicKey"]
      resources = [aws_kms_key.recording_signing.arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "api" ? [1] : []
    content {
      sid       = "InvokeRunner"
      actions   = ["lambda:InvokeFunction"]
      resources = [local.runner_arn, "${local.runner_arn}:*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "api" ? [1] : []
    content {
      sid       = "RunSessionTasks"
      actions   = ["ecs:RunTask", "ecs:TagResource"]
      resources = [aws_ecs_task_definition.session.arn_without_revision, "${aws_ecs_task_definition.session.arn_without_revision}:*", "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${aws_ecs_cluster.sessions.name}/*"]
      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_cond]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "api" ? [1] : []
    content {
      sid       = "PassSessionRoles"
      actions   = ["iam:PassRole"]
      resources = [aws_iam_role.session_task.arn, aws_iam_role.session_execution.arn]
      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ecs-tasks.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = contains(["api", "sweeper"], each.key) ? [1] : []
    content {
      sid       = "WatchSessionTasks"
      actions   = ["ecs:DescribeTasks", "ecs:StopTask", "ecs:ListTasks"]
      resources = ["*"]
      condition {
        test     = "ArnEquals"
        variable = "ecs:cluster"
        values   = [local.cluster_cond]
      }
    }
  }

  dynamic "statement" {
    for_each = contains(local.vpc_lambdas, each.key) ? [1] : []
    content {
      sid       = "VPCNetworkInterfaces"
      actions   = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
      resources = ["*"]
    }
  }
}

# The session task runs the runner in ECS mode: the same rights as the
# runner function.
resource "aws_iam_role" "session_task" {
  name               = "${var.name}-session-task"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "session_task" {
  name   = "${var.name}-session-task"
  role   = aws_iam_role.session_task.id
  policy = data.aws_iam_policy_document.session_task.json
}

data "aws_iam_policy_document" "session_task" {
  statement {
    sid       = "Grants"
    actions   = ["dynamodb:GetItem"]
    resources = local.table_arns
  }
  statement {
    sid       = "WriteRecording"
    actions   = ["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload", "s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.recordings.arn}/${local.recording_prefix}*"]
  }
  statement {
    sid       = "Key"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "SignRecordings"
    actions   = ["kms:Sign", "kms:GetPublicKey"]
    resources = [aws_kms_key.recording_signing.arn]
  }
}

# ECS itself pulls the image and writes the task's logs.
resource "aws_iam_role" "session_execution" {
  name               = "${var.name}-session-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "session_execution" {
  name   = "${var.name}-session-execution"
  role   = aws_iam_role.session_execution.id
  policy = data.aws_iam_policy_document.session_execution.json
}

data "aws_iam_policy_document" "session_execution" {
  statement {
    sid       = "PullImage"
    actions   = ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = ["*"]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.sessions.arn}:*"]
  }
}
