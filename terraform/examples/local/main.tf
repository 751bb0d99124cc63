# Platform plus one tenant of each tier against moto (scripts/moto_server.py).
# See README.md for the commands.

provider "aws" {
  region     = var.region
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true

  endpoints {
    ec2            = var.endpoint
    ecs            = var.endpoint
    elbv2          = var.endpoint
    iam            = var.endpoint
    kms            = var.endpoint
    logs           = var.endpoint
    rds            = var.endpoint
    route53        = var.endpoint
    s3             = var.endpoint
    secretsmanager = var.endpoint
    sts            = var.endpoint
  }
}

module "platform" {
  source = "../../modules/platform"

  name                 = "tenantctl-local"
  domain               = var.domain
  data_bucket          = var.data_bucket
  create_load_balancer = false
  create_nat_gateway   = false
  force_destroy        = true
}

locals {
  tenants = {
    starter-co = {
      tier      = "starter"
      isolation = "pool"
      cpu       = 256
      memory    = 512
      limits = {
        RATE_LIMIT_PER_MINUTE = "100"
        CACHE_KEY_QUOTA       = "1000"
      }
    }
    growth-co = {
      tier      = "growth"
      isolation = "bridge"
      cpu       = 512
      memory    = 1024
      limits = {
        RATE_LIMIT_PER_MINUTE = "1000"
        CACHE_KEY_QUOTA       = "10000"
      }
    }
    enterprise-co = {
      tier      = "enterprise"
      isolation = "silo"
      cpu       = 1024
      memory    = 2048
      limits = {
        RATE_LIMIT_PER_MINUTE = "10000"
        CACHE_KEY_QUOTA       = "100000"
      }
    }
  }
}

module "tenant" {
  source   = "../../modules/tenant"
  for_each = local.tenants

  tenant_id = each.key
  tier      = each.value.tier
  isolation = each.value.isolation
  cpu       = each.value.cpu
  memory    = each.value.memory
  limits    = each.value.limits
  image     = "public.ecr.aws/nginx/nginx:stable"

  data_bucket    = module.platform.data_bucket
  domain         = module.platform.domain
  hosted_zone_id = module.platform.hosted_zone_id
  dns_target     = module.platform.dns_target

  cluster_arn                = module.platform.cluster_arn
  vpc_id                     = module.platform.vpc_id
  subnet_ids                 = module.platform.subnet_ids
  service_security_group_ids = module.platform.service_security_group_ids

  database = var.shared_database

  deletion_protection         = each.value.isolation == "silo" ? var.enterprise_deletion_protection : true
  secret_recovery_window_days = 0
}
