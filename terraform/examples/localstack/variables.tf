variable "endpoint" {
  description = "The local AWS endpoint Terraform talks to: LocalStack (http://localhost:4566) or the moto server localstack/up.sh started."
  type        = string
  default     = "http://localhost:4566"
}

variable "functions_endpoint" {
  description = "The AWS endpoint as the functions see it (AWS_ENDPOINT_URL), when it differs from endpoint (e.g. http://localstack:4566 inside Docker). Empty: endpoint."
  type        = string
  default     = ""
}

variable "region" {
  description = "Region of the local endpoint."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Resource name prefix."
  type        = string
  default     = "jitgate-local"
}

variable "artifacts_dir" {
  description = "Where `make functions` wrote api.zip, runner.zip and sweeper.zip."
  type        = string
  default     = "../../../bin/functions"
}

variable "runner_image" {
  description = "Session proxy image (the runner binary)."
  type        = string
  default     = "jitgate-runner:local"
}

variable "policy_yaml" {
  description = "Policy YAML; empty uses policy.yaml next to this file."
  type        = string
  default     = ""
}

variable "vault_addr" {
  description = "Vault (or the test double) as the functions reach it."
  type        = string
  default     = "http://127.0.0.1:8200"
}

variable "vault_token" {
  description = "Vault token of the API and sweeper functions (see the module's variable)."
  type        = string
  sensitive   = true
  default     = ""
}
