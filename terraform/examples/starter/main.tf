# A starter tenant on an existing platform: pool isolation (rows with tenant_id in the
# shared PostgreSQL, row-level security), a task definition on the shared cluster.
# Every value is a literal placeholder; `terraform validate` needs no AWS account.

provider "aws" {
  region = local.region
}

locals {
  region = "eu-west-1"

  # What the platform module (or an existing platform) provides.
  platform = {
    data_bucket    = "example-saas-tenant-data"
    domain         = "tenants.example.com"
    hosted_zone_id = "Z0123456789EXAMPLE0AB"
    # Alias to the shared load balancer (Z32O12XQLNTSW2 is the ALB zone of eu-west-1).
    dns_target = {
      name    = "example-saas-1234567890.eu-west-1.elb.amazonaws.com"
      zone_id = "Z32O12XQLNTSW2"
    }
    cluster_arn = "arn:aws:ecs:eu-west-1:111122223333:cluster/example-saas"
    vpc_id      = "vpc-0123456789abcdef0"
    subnet_ids  = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
    database = {
      host   = "example-saas-shared.cluster-c0abcdef1234.eu-west-1.rds.amazonaws.com"
      port   = 5432
      dbname = "app"
    }
  }
}

module "tenant" {
  source = "../../modules/tenant"

  tenant_id = "initech"
  tier      = "starter"
  isolation = "pool" # fixed by the tier

  # tenantctl's starter profile: the smallest Fargate size and the lowest limits.
  cpu    = 256
  memory = 512
  limits = {
    RATE_LIMIT_PER_MINUTE   = "100"
    MAX_CONCURRENT_REQUESTS = "10"
    MAX_DB_CONNECTIONS      = "5"
    STATEMENT_TIMEOUT_MS    = "5000"
    CACHE_KEY_QUOTA         = "1000"
  }

  image               = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/saas-app:1.4.2"
  ecr_repository_arns = ["arn:aws:ecr:eu-west-1:111122223333:repository/saas-app"]

  data_bucket    = local.platform.data_bucket
  domain         = local.platform.domain
  hosted_zone_id = local.platform.hosted_zone_id
  dns_target     = local.platform.dns_target

  # Used by silo tenants only, but required inputs of the module.
  cluster_arn = local.platform.cluster_arn
  vpc_id      = local.platform.vpc_id
  subnet_ids  = local.platform.subnet_ids

  database = local.platform.database

  tags = {
    Environment = "production"
  }
}
