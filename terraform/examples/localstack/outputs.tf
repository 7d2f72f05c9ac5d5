output "broker_url" {
  description = "Function URL of the broker API."
  value       = module.jitgate.broker_url
}

output "table_name" {
  description = "Grants table."
  value       = module.jitgate.table_name
}

output "bucket_name" {
  description = "Recordings bucket."
  value       = module.jitgate.bucket_name
}

output "recording_signing_key_arn" {
  description = "KMS key that signs recordings (jitgate recording verify --kms-key)."
  value       = module.jitgate.recording_signing_key_arn
}

output "function_names" {
  description = "Function names by role."
  value       = module.jitgate.function_names
}

output "ecs_cluster_arn" {
  description = "Session task cluster."
  value       = module.jitgate.ecs_cluster_arn
}

output "session_task_definition_arn" {
  description = "Session task definition."
  value       = module.jitgate.session_task_definition_arn
}

output "session_security_group_id" {
  description = "Session task security group."
  value       = module.jitgate.session_security_group_id
}

output "session_subnet_id" {
  description = "Session task subnet."
  value       = aws_subnet.sessions.id
}

output "kms_key_arn" {
  description = "Deployment key."
  value       = module.jitgate.kms_key_arn
}

output "sweeper_rule_name" {
  description = "Sweeper schedule rule."
  value       = module.jitgate.sweeper_rule_name
}
