data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs           = slice(data.aws_availability_zones.available.names, 0, 2)
  create_public = var.create_load_balancer || var.create_nat_gateway

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
  count = var.create_load_balancer ? 1 : 0

  name        = "${var.name}-lb"
  description = "tenantctl: public load balancer"
  vpc_id      = aws_vpc.this.id

  dynamic "ingress" {
    for_each = var.certificate_arn != null ? [80, 443] : [80]

    content {
      description = "Port ${ingress.value} from anywhere"
      protocol    = "tcp"
      from_port   = ingress.value
      to_port     = ingress.value
      cidr_blocks = ["0.0.0.0/0"]
    }
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
  count = var.create_load_balancer ? 1 : 0

  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.lb[0].id]
  drop_invalid_header_fields = true

  tags = local.tags
}

resource "aws_lb_listener" "http" {
  count = var.create_load_balancer ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 80
  protocol          = "HTTP"

  dynamic "default_action" {
    for_each = var.certificate_arn != null ? [1] : []

    content {
      type = "redirect"

      redirect {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  dynamic "default_action" {
    for_each = var.certificate_arn == null ? [1] : []

    content {
      type = "fixed-response"

      fixed_response {
        content_type = "text/plain"
        message_body = "unknown tenant"
        status_code  = "404"
      }
    }
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  count = var.create_load_balancer && var.certificate_arn != null ? 1 : 0

  load_balancer_arn = aws_lb.this[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
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

  tags = local.tags
}

################################################################################
# Data bucket
################################################################################

resource "aws_s3_bucket" "data" {
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

################################################################################
# DNS
################################################################################

resource "aws_route53_zone" "this" {
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
