# Session grants: one Fargate task per grant, running the runner image in ECS
# mode. The task gets only JITGATE_GRANT_ID and a single-use Vault wrapping
# token from the broker (container overrides); everything else is here.
resource "aws_ecs_cluster" "sessions" {
  name = "${var.name}-sessions"
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "sessions" {
  name              = "/ecs/${var.name}-sessions"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
  tags              = local.tags
}

resource "aws_ecs_task_definition" "session" {
  family                   = "${var.name}-session"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "256"
  memory                   = "512"
  task_role_arn            = aws_iam_role.session_task.arn
  execution_role_arn       = aws_iam_role.session_execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.lambda_architecture == "arm64" ? "ARM64" : "X86_64"
  }

  container_definitions = jsonencode([{
    name      = "proxy"
    image     = var.runner_image
    essential = true
    # Per-container figures: Fargate takes the task's, some emulators need these.
    cpu    = 256
    memory = 512
    portMappings = [{
      containerPort = var.session_port
      protocol      = "tcp"
    }]
    environment = [for k, v in local.runner_environment : { name = k, value = v }]
    linuxParameters = {
      initProcessEnabled = true
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.sessions.name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = "session"
      }
    }
  }])

  tags = local.tags
}

# Agents reach a session task on session_port from agent_cidr_blocks and
# nothing else; the task reaches Vault, the target and AWS APIs.
resource "aws_security_group" "sessions" {
  name        = "${var.name}-sessions"
  description = "jitgate session tasks: agents in, Vault/targets/AWS out"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "sessions" {
  for_each          = toset(var.agent_cidr_blocks)
  security_group_id = aws_security_group.sessions.id
  description       = "agents"
  ip_protocol       = "tcp"
  from_port         = var.session_port
  to_port           = var.session_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "sessions" {
  security_group_id = aws_security_group.sessions.id
  description       = "Vault, targets and AWS APIs"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
