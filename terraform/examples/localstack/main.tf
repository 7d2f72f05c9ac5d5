# jitgate against LocalStack (or moto's server, the stand-in that
# localstack/up.sh starts): the whole module on a local AWS endpoint.
#
#   make functions                     # bin/functions/{api,runner,sweeper}.zip
#   localstack/up.sh                   # or: docker compose -f localstack/docker-compose.yml up -d
#   terraform init && terraform apply -var endpoint=$(cat "$TMPDIR/jitgate-localstack/endpoint")
#
# LocalStack cannot run the functions' zips without its Lambda runtime; the
# tests run them under the Lambda Runtime Interface Emulator with the
# environment this example deploys (functions/e2e_test.go, terraform/terraform_test.go).

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.50.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region     = var.region
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true

  endpoints {
    cloudwatch     = var.endpoint
    cloudwatchlogs = var.endpoint
    dynamodb       = var.endpoint
    ec2            = var.endpoint
    ecs            = var.endpoint
    events         = var.endpoint
    iam            = var.endpoint
    kms            = var.endpoint
    lambda         = var.endpoint
    s3             = var.endpoint
    sts            = var.endpoint
  }
}

# A small VPC of its own (DNS hostnames on, which ECS tasks' ENIs need).
resource "aws_vpc" "this" {
  cidr_block           = "10.42.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name}-local" }
}

resource "aws_subnet" "sessions" {
  vpc_id            = aws_vpc.this.id
  cidr_block        = "10.42.1.0/24"
  availability_zone = "${var.region}a"
  tags              = { Name = "${var.name}-sessions" }
}

module "jitgate" {
  source = "../../modules/jitgate"

  name          = var.name
  artifacts_dir = var.artifacts_dir
  runner_image  = var.runner_image
  policy_yaml   = var.policy_yaml != "" ? var.policy_yaml : file("${path.module}/policy.yaml")
  vault_addr    = var.vault_addr
  vault_token   = var.vault_token

  vpc_id             = aws_vpc.this.id
  session_subnet_ids = [aws_subnet.sessions.id]
  agent_cidr_blocks  = ["10.42.0.0/16"]

  # Throw-away environment on a plain-HTTP endpoint.
  bucket_policy_denies      = false
  bucket_force_destroy      = true
  table_deletion_protection = false
  kms_deletion_window_days  = 7
  retention_days            = 1
  log_retention_days        = 1

  # The functions talk to the same local endpoint.
  extra_environment = {
    AWS_ENDPOINT_URL      = var.functions_endpoint != "" ? var.functions_endpoint : var.endpoint
    JITGATE_S3_PATH_STYLE = "true"
  }
}
