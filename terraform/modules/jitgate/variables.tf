# ---------------------------------------------------------------------------
# Naming and packaging
# ---------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (table, bucket, functions, cluster). Lowercase letters, digits and hyphens."
  type        = string
  default     = "jitgate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "artifacts_dir" {
  description = "Directory holding api.zip, runner.zip and sweeper.zip as built by `make functions` (each zip holds one bootstrap for provided.al2023). Terraform uploads them; it does not build them."
  type        = string
}

variable "lambda_architecture" {
  description = "Architecture the function zips were built for: x86_64 (default) or arm64. It must match the machine `make functions` ran on (cgo)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "runner_image" {
  description = "Container image of the session proxy: the runner binary (bin/functions runner bootstrap) as the entry point of a minimal image. ECS runs one task of it per session grant."
  type        = string
}

# ---------------------------------------------------------------------------
# Policy and Vault
# ---------------------------------------------------------------------------

variable "policy_yaml" {
  description = "The jitgate policy (YAML: issuers, targets, rules). Stored as config/policy.yaml in the recordings bucket, encrypted with the deployment's KMS key, and read by the API and sweeper functions at cold start."
  type        = string
}

variable "vault_addr" {
  description = "Address of the Vault cluster that issues database credentials and wraps grant specs (https://vault.example.com:8200). Every function and the session task reach it."
  type        = string
}

variable "vault_aws_auth" {
  description = "Log the API and sweeper functions in to Vault with Vault's AWS IAM auth method (recommended): each logs in as the Vault role named like its IAM role (<name>-api, <name>-sweeper; see output function_role_arns for bound_iam_principal_arn). mount is the auth method's mount, server_id its iam_server_id_header_value."
  type = object({
    enabled   = bool
    mount     = optional(string, "aws")
    server_id = optional(string, "")
  })
  default = { enabled = false }
}

variable "vault_token" {
  description = "Vault token of the API and sweeper functions when vault_aws_auth is off (database creds, lease revocation, response wrapping). It is stored in the functions' environment, encrypted with the deployment's KMS key, and readable by whoever may call lambda:GetFunctionConfiguration: prefer vault_aws_auth. The runner and the session task never get a Vault token."
  type        = string
  sensitive   = true
  default     = ""
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the session tasks (and of the functions when lambda_subnet_ids is set)."
  type        = string
}

variable "session_subnet_ids" {
  description = "Private subnets session tasks run in. Agents connect to a task's private address on session_port."
  type        = list(string)

  validation {
    condition     = length(var.session_subnet_ids) > 0
    error_message = "session_subnet_ids needs at least one subnet."
  }
}

variable "agent_cidr_blocks" {
  description = "CIDR blocks allowed to connect to session tasks (the agents' or CI runners' network). Nothing else may connect."
  type        = list(string)
}

variable "session_port" {
  description = "Port the session proxy listens on inside its task."
  type        = number
  default     = 5432
}

variable "lambda_subnet_ids" {
  description = "Subnets for the API and runner functions when the targets and Vault are only reachable inside the VPC. Empty: the functions run outside the VPC."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------
# Evidence
# ---------------------------------------------------------------------------

variable "object_lock_mode" {
  description = "Object-lock mode of recordings and audit log segments: GOVERNANCE (users with s3:BypassGovernanceRetention may delete) or COMPLIANCE (nobody may delete before the retention ends, not even the root user)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "retention_days" {
  description = "How long every recording and audit segment is locked against deletion and overwrite."
  type        = number
  default     = 365
}

variable "noncurrent_version_expiration_days" {
  description = "Lifecycle: noncurrent object versions are deleted this many days after they were superseded (never before their lock ends)."
  type        = number
  default     = 400
}

variable "bucket_policy_denies" {
  description = "Attach the bucket policy that denies plain-HTTP requests and uploads encrypted with anything but aws:kms. Turn it off only for a local endpoint: LocalStack and moto speak plain HTTP, and moto ignores policy conditions (it would deny every upload)."
  type        = bool
  default     = true
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds recordings. Only for throw-away environments; locked objects still cannot be deleted."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key is deleted after `terraform destroy` (7-30)."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Retention of the functions' and session tasks' CloudWatch log groups."
  type        = number
  default     = 90
}

# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------

variable "sweeper_schedule" {
  description = "EventBridge schedule expression of the sweeper (expiry, overdue revocation, orphaned tasks)."
  type        = string
  default     = "rate(1 minute)"
}

variable "function_url_auth_type" {
  description = "Auth type of the API's Function URL. NONE is right for jitgate: every request carries an OIDC token the broker verifies itself. AWS_IAM requires SigV4-signed requests on top."
  type        = string
  default     = "NONE"
}

variable "api_memory_mb" {
  description = "Memory of the API function."
  type        = number
  default     = 512
}

variable "runner_memory_mb" {
  description = "Memory of the runner function (one exec operation per invocation)."
  type        = number
  default     = 1024
}

variable "runner_timeout_seconds" {
  description = "Timeout of one runner invocation; keep it above the broker's run timeout (2m)."
  type        = number
  default     = 180
}

variable "table_deletion_protection" {
  description = "Protect the grants table from deletion."
  type        = bool
  default     = true
}

variable "extra_environment" {
  description = "Extra environment of every function and session task, e.g. AWS_ENDPOINT_URL and JITGATE_S3_PATH_STYLE for LocalStack. Values here win."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
