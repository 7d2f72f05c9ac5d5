output "broker_url" {
  description = "The broker API's Function URL: point `jitgate request`, the GitHub Action and approvers here."
  value       = aws_lambda_function_url.api.function_url
}

output "table_name" {
  description = "DynamoDB grants table."
  value       = aws_dynamodb_table.grants.name
}

output "bucket_name" {
  description = "Recordings bucket (recordings/, audit/, config/policy.yaml)."
  value       = aws_s3_bucket.recordings.bucket
}

output "kms_key_arn" {
  description = "KMS key of the table, bucket, logs and function environments."
  value       = aws_kms_key.main.arn
}

output "recording_signing_key_arn" {
  description = "KMS key (ECC_NIST_P256, SIGN_VERIFY) that signs recordings: `jitgate recording verify --kms-key <arn> ID|s3://...`."
  value       = aws_kms_key.recording_signing.arn
}

output "function_names" {
  description = "Lambda function names by role (api, runner, sweeper)."
  value       = { for k, f in aws_lambda_function.fn : k => f.function_name }
}

output "ecs_cluster_arn" {
  description = "ECS cluster of the session tasks."
  value       = aws_ecs_cluster.sessions.arn
}

output "session_task_definition_arn" {
  description = "Task definition of the session proxy."
  value       = aws_ecs_task_definition.session.arn
}

output "session_security_group_id" {
  description = "Security group of the session tasks."
  value       = aws_security_group.sessions.id
}

output "sweeper_rule_name" {
  description = "EventBridge rule that runs the sweeper."
  value       = aws_cloudwatch_event_rule.sweeper.name
}

output "function_role_arns" {
  description = "IAM role ARN of each function and of the session task: bind Vault's AWS auth roles (bound_iam_principal_arn) and database access to these."
  value = merge({ for k, r in aws_iam_role.fn : k => r.arn }, {
    session_task = aws_iam_role.session_task.arn
  })
}
