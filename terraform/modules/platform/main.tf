data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:only the first two names are used, once, for subnets fixed at creation: a new zone changes nothing
  state = "available"
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  azs           = slice(data.aws_availability_zones.available.names, 0, 2)
  create_public = var.create_load_balancer || var.create_nat_gateway
  account_id    = data.aws_caller_identity.current.account_id
  partition     = data.aws_partition.current.partition
  log_bucket    = coalesce(var.log_bucket, "${var.data_bucket}-logs")

  tags = merge(var.tags, { ManagedBy = "tenantctl" })
}

################################################################################
# Network
################################################################################

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(local.tags, { Name = var.name })
}

# The VPC's default security group admits nothing: every resource here gets its own.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-default-deny" })
}

# Every flow (accepted and rejected) of the VPC, into the log bucket (AWSLogs/<account>/vpcflowlogs/).
resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "ALL"
  log_destination_type = "s3"
  log_destination      = aws_s3_bucket.logs.arn

  tags = merge(local.tags, { Name = var.name })

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = merge(local.tags, { Name = "${var.name}-private-${local.azs[count.index]}", Tier = "private" })
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "private" {
  count = length(aws_subnet.private)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_subnet" "public" {
  count = local.create_public ? length(local.azs) : 0

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 100 + count.index)

  tags = merge(local.tags, { Name = "${var.name}-public-${local.azs[count.index]}", Tier = "public" })
}

resource "aws_internet_gateway" "this" {
  count = local.create_public ? 1 : 0

  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = var.name })
}

resource "aws_route_table" "public" {
  count = local.create_public ? 1 : 0

  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  count = local.create_public ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = length(aws_subnet.public)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  count = var.create_nat_gateway ? 1 : 0

  domain = "vpc"

  tags = merge(local.tags, { Name = "${var.name}-nat" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  count = var.create_nat_gateway ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id

  tags = merge(local.tags, { Name = var.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route" "private_nat" {
  count = var.create_nat_gateway ? 1 : 0

  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

################################################################################
# Security groups
################################################################################

# Rules are inline: against moto (and with skip_requesting_account_id) the
# standalone aws_vpc_security_group_*_rule resources that reference another
# security group show a perpetual diff (see modules/tenant).
resource "aws_security_group" "lb" {
  #checkov:skip=CKV_AWS_260:port 80 is open only so that the HTTP listener can redirect browsers to HTTPS
  count = var.create_load_balancer ? 1 : 0

  name        = "${var.name}-lb"
  description = "tenantctl: public load balancer"
  vpc_id      = aws_vpc.this.id

  # A public load balancer: HTTPS from anywhere, and HTTP only to be redirected to it.
  ingress {
    description = "HTTPS from anywhere"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }

  ingress {
    description = "HTTP from anywhere (redirected to HTTPS)"
    protocol    = "tcp"
    from_port   = 80
    to_port     = 80
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "Application port of the tenant services"
    protocol    = "tcp"
    from_port   = var.app_port
    to_port     = var.app_port
    cidr_blocks = [var.vpc_cidr]
  }

  tags = merge(local.tags, { Name = "${var.name}-lb" })
}

resource "aws_security_group" "services" {
  #checkov:skip=CKV2_AWS_5:attached by the tenant module to enterprise tenants' ECS services (output service_security_group_ids)
  #checkov:skip=CKV_AWS_382:tenant applications reach image registries, AWS APIs, their database and third-party APIs; restrict with VPC endpoints or an egress firewall
  name        = "${var.name}-services"
  description = "tenantctl: shared security group of tenant ECS services"
  vpc_id      = aws_vpc.this.id

  dynamic "ingress" {
    for_each = aws_security_group.lb[*].id

    content {
      description     = "Application port from the load balancer"
      protocol        = "tcp"
      from_port       = var.app_port
      to_port         = var.app_port
      security_groups = [ingress.value]
    }
  }

  egress {
    description = "All outbound (image pull, AWS APIs, databases)"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.tags, { Name = "${var.name}-services" })
}

################################################################################
# Load balancer (optional)
################################################################################

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:a WAF web ACL is the operator's (rules and cost); associate one with the load_balancer_arn output
  count = var.create_load_balancer ? 1 : 0

  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.lb[0].id]
  drop_invalid_header_fields = true
  # Not `!var.force_destroy`: checkov evaluates a conditional, not a negation.
  enable_deletion_protection = var.force_destroy ? false : true

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = local.tags

  depends_on = [aws_s3_bucket_policy.logs]
}

# HTTP only answers with a redirect: tenants are served over HTTPS alone.
resource "aws_lb_listener" "http" {
  count = var.create_load_balancer ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  count = var.create_load_balancer ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "unknown tenant"
      status_code  = "404"
    }
  }

  tags = local.tags
}

################################################################################
# ECS cluster
################################################################################

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

################################################################################
# Data bucket
################################################################################

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_145:SSE-S3 by default; tenant exports are SSE-KMS under each tenant's own key, which one bucket-wide key would undo
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice (a second region and its cost), not a default
  #checkov:skip=CKV2_AWS_62:nothing consumes object events; tenantctl reads the bucket directly
  bucket        = var.data_bucket
  force_destroy = var.force_destroy

  tags = local.tags
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "data" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]

    # {"AWS": "*"} rather than "*": the same principals, and a form moto's policy check reads.
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  count = var.deny_insecure_transport ? 1 : 0

  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.data.json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# Removing a tenant deletes its objects, which versioning keeps as noncurrent versions:
# they expire after noncurrent_version_expiration_days.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_logging" "data" {
  bucket        = aws_s3_bucket.data.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${var.data_bucket}/"

  depends_on = [aws_s3_bucket_policy.logs]
}

################################################################################
# Log bucket: the data bucket's access logs, the load balancer's, the VPC's flow logs
################################################################################

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:this is the access-log bucket; logging it into itself would loop
  #checkov:skip=CKV_AWS_145:S3 server access logs and load balancer logs can only be delivered to SSE-S3 buckets
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice (a second region and its cost), not a default
  #checkov:skip=CKV2_AWS_62:nothing consumes log-object events; logs are read where they lie
  bucket        = local.log_bucket
  force_destroy = var.force_destroy

  tags = local.tags
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket = aws_s3_bucket.logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

data "aws_elb_service_account" "this" {}

# Who may write which logs where, each writer confined to its prefix and this account.
data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]

    # {"AWS": "*"} rather than "*": the same principals, and a form moto's policy check reads.
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3/${var.data_bucket}/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.data.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "LoadBalancerLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/AWSLogs/${local.account_id}/*"]

    # Regions before August 2022 deliver as the regional ELB account, newer ones as the
    # log delivery service.
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid       = "FlowLogsWrite"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/AWSLogs/${local.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["delivery.logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-acl"
      values   = ["bucket-owner-full-control"]
    }
  }

  statement {
    sid       = "FlowLogsCheck"
    actions   = ["s3:GetBucketAcl", "s3:ListBucket"]
    resources = [aws_s3_bucket.logs.arn]

    principals {
      type        = "Service"
      identifiers = ["delivery.logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

################################################################################
# DNS
################################################################################

resource "aws_route53_zone" "this" {
  #checkov:skip=CKV2_AWS_38:DNSSEC needs a KMS signing key in us-east-1 and a DS record at the parent zone, which the domain's owner controls
  #checkov:skip=CKV2_AWS_39:query logging needs a log group in us-east-1 with a resource policy; the tenant records are public names
  name          = var.domain
  comment       = "tenantctl: tenant records <tenant_id>.${var.domain}"
  force_destroy = var.force_destroy

  tags = local.tags
}

################################################################################
# Dashboard of `tenantctl db migrate` runs
################################################################################

data "aws_region" "current" {}

locals {
  # What src/metrics.rs publishes: counts per tier (dimension Tier) and over all tiers (no
  # dimension); the run's duration over all tiers only (a run is not per tier).
  migration_tiers = ["starter", "growth", "enterprise"]
  migration_count_widgets = [
    { metric = "MigrationsApplied", stat = "Sum", title = "Migrations applied" },
    { metric = "TargetsMigrated", stat = "Sum", title = "Targets migrated" },
    # States at the end of a run, not events: the last value, not a sum over runs.
    { metric = "TargetsPending", stat = "Maximum", title = "Targets left pending" },
    { metric = "TargetsFailed", stat = "Maximum", title = "Targets failed" },
  ]
  migration_widgets = concat(
    [
      for i, w in local.migration_count_widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = w.title
          region  = data.aws_region.current.name
          view    = "timeSeries"
          stacked = false
          stat    = w.stat
          period  = 300
          metrics = concat(
            [for t in local.migration_tiers : [var.metrics_namespace, w.metric, "Tier", t, { label = t }]],
            [[var.metrics_namespace, w.metric, { label = "all tiers" }]],
          )
        }
      }
    ],
    [
      {
        type   = "metric"
        x      = 0
        y      = 12
        width  = 12
        height = 6
        properties = {
          title   = "Run duration (seconds)"
          region  = data.aws_region.current.name
          view    = "timeSeries"
          stacked = false
          stat    = "Maximum"
          period  = 300
          metrics = [[var.metrics_namespace, "RunDuration", { label = "db migrate" }]]
        }
      },
    ],
  )
}

resource "aws_cloudwatch_dashboard" "migrations" {
  count = var.create_dashboard ? 1 : 0

  dashboard_name = "${var.name}-migrations"
  dashboard_body = jsonencode({ widgets = local.migration_widgets })
}

################################################################################
# Tenant alarms: every tenant's CloudWatch alarms notify this topic
################################################################################

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-tenant-alarms"
  kms_master_key_id = "alias/aws/sns"
  tags              = local.tags
}
