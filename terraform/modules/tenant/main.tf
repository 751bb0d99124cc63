data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  silo   = var.isolation == "silo"
  bridge = var.isolation == "bridge"
  # The dedicated database (RDS instance, KMS key, security groups, db-admin secret)
  # exists while the tenant is a silo, and also during a move into or out of silo: it is
  # provisioned beside the source before the cut-over, and kept, hidden, until the move
  # is finished. Where the tenant's login points follows `isolation` alone.
  dedicated = local.silo || var.dedicated_database
  # The tenant's own KMS key: per tier (`tenant_key`), and always with a dedicated
  # database, whose storage it encrypts.
  has_key = local.dedicated || var.tenant_key

  name           = "tenant-${var.tenant_id}"
  secret_prefix  = "tenants/${var.tenant_id}"
  log_group_name = "/tenants/${var.tenant_id}"
  partition      = data.aws_partition.current.partition

  db_username       = "tenant_${var.tenant_id}"
  db_schema         = local.bridge ? "tenant_${var.tenant_id}" : null
  db_admin_username = "tenantadmin"
  db_admin_dbname   = "app"

  # Where the tenant's database connection points. Passwords are never part of
  # these values: they only exist in ephemeral values and in Secrets Manager.
  db_connection = local.silo ? (
    var.silo_database_override != null ? {
      host   = var.silo_database_override.host
      port   = var.silo_database_override.port
      dbname = "tenant_${var.tenant_id}"
      } : {
      host   = try(aws_db_instance.this[0].address, null)
      port   = try(aws_db_instance.this[0].port, null)
      dbname = local.db_admin_dbname
    }
    ) : {
    host   = try(var.database.host, null)
    port   = try(var.database.port, null)
    dbname = try(var.database.dbname, null)
  }

  db_admin_connection = var.silo_database_override != null ? {
    host   = var.silo_database_override.host
    port   = var.silo_database_override.port
    dbname = var.silo_database_override.dbname
    } : {
    host   = try(aws_db_instance.this[0].address, null)
    port   = try(aws_db_instance.this[0].port, null)
    dbname = local.db_admin_dbname
  }

  environment = merge(var.limits, {
    TENANT_ID        = var.tenant_id
    TENANT_TIER      = var.tier
    TENANT_ISOLATION = var.isolation
  })

  # On every taggable resource: `tenant` is the cost-allocation tag (activate it in the
  # Billing console to group costs by tenant), `managed-by` marks what tenantctl owns, and
  # `tenantctl verify` reads them back (src/verify.rs, expected_tags). Last in the merge,
  # so var.tags cannot change them.
  tags = merge(var.tags, {
    tenant       = var.tenant_id
    tier         = var.tier
    isolation    = var.isolation
    "managed-by" = "tenantctl"
  })
}

################################################################################
# Passwords: ephemeral, never in plan or state
################################################################################

ephemeral "aws_secretsmanager_random_password" "db" {
  password_length     = 32
  exclude_punctuation = true
}

ephemeral "aws_secretsmanager_random_password" "db_admin" {
  count = local.dedicated ? 1 : 0

  password_length     = 32
  exclude_punctuation = true
}

################################################################################
# KMS key (per tier; always with a dedicated database)
################################################################################

# Who may use the tenant's key: the account administers it (never locked out) but uses it
# only through the services that hold the tenant's data (RDS, Secrets Manager, S3), CloudWatch
# Logs encrypts the tenant's log group with it, and of
# the tenant's own roles, the execution role reads its secrets and the task role its
# objects. Nobody else's role, and no other account.
locals {
  account_root = "arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  via_service  = { for s in ["rds", "secretsmanager", "s3"] : s => "${s}.${data.aws_region.current.name}.amazonaws.com" }
}

resource "aws_kms_key" "this" {
  count = local.has_key ? 1 : 0

  description         = "tenantctl: ${local.name} data, secrets and logs"
  enable_key_rotation = true
  # Destroying the key is crypto-shredding (`tenantctl remove --shred`): every copy
  # under it becomes unreadable once the window is over. tenantctl copies the final
  # snapshot under the platform's archive key first, and keeps the key out of a plain
  # remove.
  deletion_window_in_days = var.key_deletion_window_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = local.account_root }
        Action = [
          "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:Delete*", "kms:Describe*",
          "kms:Disable*", "kms:Enable*", "kms:Get*", "kms:List*", "kms:Put*",
          "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion",
          "kms:TagResource", "kms:UntagResource", "kms:Update*",
        ]
        Resource = "*"
      },
      {
        Sid       = "AccountUsesTheKeyThroughTenantDataServices"
        Effect    = "Allow"
        Principal = { AWS = local.account_root }
        Action = [
          "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
          "kms:GenerateDataKey*", "kms:ListGrants", "kms:ReEncrypt*",
        ]
        Resource = "*"
        Condition = {
          StringEquals = {
            "kms:CallerAccount" = data.aws_caller_identity.current.account_id
            "kms:ViaService"    = values(local.via_service)
          }
        }
      },
      {
        Sid       = "CloudWatchLogsEncryptsTheTenantLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${data.aws_region.current.name}.amazonaws.com" }
        Action    = ["kms:Decrypt*", "kms:Describe*", "kms:Encrypt*", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
        Resource  = "*"
        Condition = {
          ArnEquals = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:${local.log_group_name}"
          }
        }
      },
      {
        Sid       = "ExecutionRoleReadsTenantSecrets"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.execution.arn }
        Action    = ["kms:Decrypt", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          StringEquals = { "kms:ViaService" = local.via_service.secretsmanager }
        }
      },
      {
        Sid       = "TaskRoleUsesTenantObjects"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.task.arn }
        Action    = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "kms:ViaService" = local.via_service.s3 }
        }
      },
    ]
  })

  tags = local.tags
}

resource "aws_kms_alias" "this" {
  count = local.has_key ? 1 : 0

  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

################################################################################
# Secrets Manager
################################################################################

resource "aws_secretsmanager_secret" "db" {
  #checkov:skip=CKV2_AWS_57:the password is a write-only value rotated by raising secret_version (tenantctl), not by a rotation Lambda
  name                    = "${local.secret_prefix}/db"
  description             = "tenantctl: database connection of tenant ${var.tenant_id}"
  kms_key_id              = local.has_key ? aws_kms_key.this[0].arn : null
  recovery_window_in_days = var.secret_recovery_window_days

  tags = local.tags
}

# Non-secret part of the connection: when it changes, a new secret version
# (with a new password) is written.
resource "terraform_data" "db_connection" {
  input = merge(local.db_connection, {
    username = local.db_username
    schema   = local.db_schema
  })
}

resource "aws_secretsmanager_secret_version" "db" {
  secret_id = aws_secretsmanager_secret.db.id
  secret_string_wo = jsonencode(merge(
    {
      engine   = "postgres"
      host     = local.db_connection.host
      port     = local.db_connection.port
      dbname   = local.db_connection.dbname
      username = local.db_username
      password = ephemeral.aws_secretsmanager_random_password.db.random_password
    },
    local.bridge ? { schema = local.db_schema } : {},
  ))
  secret_string_wo_version = var.secret_version

  lifecycle {
    replace_triggered_by = [terraform_data.db_connection]
  }
}

resource "aws_secretsmanager_secret" "db_admin" {
  #checkov:skip=CKV2_AWS_57:the password is a write-only value rotated by raising secret_version (tenantctl), not by a rotation Lambda
  count = local.dedicated ? 1 : 0

  name                    = "${local.secret_prefix}/db-admin"
  description             = "tenantctl: master credentials of tenant ${var.tenant_id}'s dedicated database"
  kms_key_id              = aws_kms_key.this[0].arn
  recovery_window_in_days = var.secret_recovery_window_days

  tags = local.tags
}

# Replacing the DB instance sets a new master password: write it again.
resource "terraform_data" "db_admin_connection" {
  count = local.dedicated ? 1 : 0

  input = merge(local.db_admin_connection, {
    username    = local.db_admin_username
    instance_id = aws_db_instance.this[0].id
  })
}

resource "aws_secretsmanager_secret_version" "db_admin" {
  count = local.dedicated ? 1 : 0

  secret_id = aws_secretsmanager_secret.db_admin[0].id
  secret_string_wo = jsonencode({
    engine   = "postgres"
    host     = local.db_admin_connection.host
    port     = local.db_admin_connection.port
    dbname   = local.db_admin_connection.dbname
    username = local.db_admin_username
    password = ephemeral.aws_secretsmanager_random_password.db_admin[0].random_password
  })
  secret_string_wo_version = var.secret_version

  lifecycle {
    replace_triggered_by = [terraform_data.db_admin_connection[count.index]]
  }
}

################################################################################
# Logs
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:the tenant's own key when its tier gives it one (tenant_key); otherwise CloudWatch Logs' default encryption at rest
  #checkov:skip=CKV_AWS_338:30 days of application logs per tenant; keeping them a year is the operator's cost decision
  name              = local.log_group_name
  retention_in_days = 30
  kms_key_id        = local.has_key ? aws_kms_key.this[0].arn : null

  tags = local.tags
}

################################################################################
# IAM: task role (what the application may do)
################################################################################

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    sid     = "EcsTasksOnly"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = local.name
  description        = "tenantctl: task role of tenant ${var.tenant_id}"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json

  tags = local.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "TenantObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:${local.partition}:s3:::${var.data_bucket}/tenants/${var.tenant_id}/*"]
  }

  statement {
    sid       = "ListTenantPrefix"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${var.data_bucket}"]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["tenants/${var.tenant_id}/", "tenants/${var.tenant_id}/*"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "${local.name}-data"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

################################################################################
# IAM: execution role (what ECS may do to start the task)
################################################################################

resource "aws_iam_role" "execution" {
  name               = "${local.name}-exec"
  description        = "tenantctl: ECS execution role of tenant ${var.tenant_id}"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json

  tags = local.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "TenantSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.db.arn]
  }

  dynamic "statement" {
    for_each = local.has_key ? [aws_kms_key.this[0].arn] : []

    content {
      sid       = "TenantKeyViaSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
      }
    }
  }

  statement {
    sid       = "TenantLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:log-stream:*"]
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [var.ecr_repository_arns] : []

    content {
      sid       = "PullImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []

    content {
      sid       = "EcrAuthorizationToken"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "${local.name}-exec"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

################################################################################
# ECS task definition
################################################################################

resource "aws_ecs_task_definition" "this" {
  #checkov:skip=CKV_AWS_336:whether the application runs on a read-only root filesystem is the image's property (the default nginx image writes /var/cache)
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn

  container_definitions = jsonencode([
    {
      name      = "app"
      image     = var.image
      essential = true
      environment = [
        for name in sort(keys(local.environment)) : {
          name  = name
          value = local.environment[name]
        }
      ]
      secrets = [
        {
          name      = "DATABASE_SECRET"
          valueFrom = aws_secretsmanager_secret.db.arn
        }
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "app"
        }
      }
    }
  ])

  tags = local.tags
}

################################################################################
# DNS
################################################################################

resource "aws_route53_record" "this" {
  #checkov:skip=CKV2_AWS_23:an alias to the platform's load balancer, which is passed in as dns_target rather than created here
  zone_id = var.hosted_zone_id
  name    = "${var.tenant_id}.${var.domain}"
  type    = var.dns_target.zone_id != null ? "A" : "CNAME"
  ttl     = var.dns_target.zone_id != null ? null : 60
  records = var.dns_target.zone_id != null ? null : [var.dns_target.name]

  dynamic "alias" {
    for_each = var.dns_target.zone_id != null ? [var.dns_target] : []

    content {
      name                   = alias.value.name
      zone_id                = alias.value.zone_id
      evaluate_target_health = true
    }
  }
}

################################################################################
# Silo: dedicated network boundary, database and service
################################################################################

# Rules are inline: moto's DescribeSecurityGroupRules omits the description of
# security-group-referencing rules and the provider (with
# skip_requesting_account_id) reads the source as "<account>/sg-...", so
# aws_vpc_security_group_*_rule resources show a perpetual diff there.
resource "aws_security_group" "service" {
  #checkov:skip=CKV_AWS_382:the tenant application reaches its image registry, AWS APIs, its database and third-party APIs; restrict with VPC endpoints or an egress firewall
  count = local.dedicated ? 1 : 0

  name        = "${local.name}-service"
  description = "tenantctl: ECS service of tenant ${var.tenant_id}"
  vpc_id      = var.vpc_id

  egress {
    description = "All outbound (image pull, AWS APIs, database)"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.tags, { Name = "${local.name}-service" })
}

resource "aws_security_group" "db" {
  count = local.dedicated ? 1 : 0

  name        = "${local.name}-db"
  description = "tenantctl: dedicated database of tenant ${var.tenant_id}"
  vpc_id      = var.vpc_id

  ingress {
    description     = "PostgreSQL from the tenant ECS service only"
    protocol        = "tcp"
    from_port       = 5432
    to_port         = 5432
    security_groups = [aws_security_group.service[0].id]
  }

  # tenantctl's own way in, to provision and migrate the database with its db-admin
  # login: only what the operator configured (`[database] admin_*`), nothing by default.
  dynamic "ingress" {
    for_each = length(var.admin_cidr_blocks) > 0 ? [var.admin_cidr_blocks] : []

    content {
      description = "PostgreSQL from tenantctl admin networks"
      protocol    = "tcp"
      from_port   = 5432
      to_port     = 5432
      cidr_blocks = ingress.value
    }
  }

  dynamic "ingress" {
    for_each = length(var.admin_security_group_ids) > 0 ? [var.admin_security_group_ids] : []

    content {
      description     = "PostgreSQL from tenantctl admin security groups"
      protocol        = "tcp"
      from_port       = 5432
      to_port         = 5432
      security_groups = ingress.value
    }
  }

  # No outbound rules: the database initiates no connections.
  egress = []

  tags = merge(local.tags, { Name = "${local.name}-db" })
}

resource "aws_db_subnet_group" "this" {
  count = local.dedicated ? 1 : 0

  name        = local.name
  description = "tenantctl: dedicated database of tenant ${var.tenant_id}"
  subnet_ids  = var.subnet_ids

  tags = local.tags
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:Multi-AZ doubles the instance cost: a tier decision (db_instance_class and its standby), not a default
  #checkov:skip=CKV_AWS_353:Performance Insights is unavailable on the small classes the tier profiles start from
  #checkov:skip=CKV_AWS_118:enhanced monitoring needs an account-wide monitoring role; the basic RDS metrics remain
  #checkov:skip=CKV_AWS_129:PostgreSQL logs can hold tenant data (statements, errors): exporting them is opt-in
  #checkov:skip=CKV2_AWS_30:statement logging would copy tenant data into logs
  #checkov:skip=CKV_AWS_161:tenantctl and the application authenticate with passwords from Secrets Manager; IAM authentication would add a second way in
  count = local.dedicated ? 1 : 0

  identifier     = local.name
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage = var.db_allocated_storage
  storage_type      = "gp3"
  storage_encrypted = true
  kms_key_id        = aws_kms_key.this[0].arn

  db_name             = local.db_admin_dbname
  username            = local.db_admin_username
  password_wo         = ephemeral.aws_secretsmanager_random_password.db_admin[0].random_password
  password_wo_version = var.secret_version

  db_subnet_group_name   = aws_db_subnet_group.this[0].name
  vpc_security_group_ids = [aws_security_group.db[0].id]
  publicly_accessible    = false

  backup_retention_period    = 7
  copy_tags_to_snapshot      = true
  auto_minor_version_upgrade = true
  deletion_protection        = var.deletion_protection
  skip_final_snapshot        = var.skip_final_snapshot
  final_snapshot_identifier  = var.skip_final_snapshot ? null : coalesce(var.final_snapshot_identifier, "${local.name}-final")

  tags = local.tags
}

resource "aws_ecs_service" "this" {
  count = local.silo ? 1 : 0

  name                  = local.name
  cluster               = var.cluster_arn
  task_definition       = aws_ecs_task_definition.this.arn
  launch_type           = "FARGATE"
  desired_count         = 1
  wait_for_steady_state = false

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = concat([aws_security_group.service[0].id], var.service_security_group_ids)
    assign_public_ip = false
  }

  tags = local.tags

  lifecycle {
    # moto reports a perpetual diff on this attribute.
    ignore_changes = [availability_zone_rebalancing]
  }
}
