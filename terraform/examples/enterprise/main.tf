# An enterprise tenant on an existing platform: silo isolation, i.e. a dedicated RDS
# PostgreSQL instance encrypted with the tenant's own KMS key behind its own security
# group, and its own ECS service on the shared cluster.
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
    # Private subnets in two AZs: an RDS subnet group needs at least two.
    subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
    # The security group the load balancer may reach.
    service_security_group_ids = ["sg-0123456789abcdef0"]
  }
}

module "tenant" {
  source = "../../modules/tenant"

  tenant_id = "acme-corp"
  tier      = "enterprise"
  isolation = "silo" # fixed by the tier

  # tenantctl's enterprise profile: the highest limits and a dedicated database.
  cpu    = 1024
  memory = 8192
  limits = {
    RATE_LIMIT_PER_MINUTE   = "10000"
    MAX_CONCURRENT_REQUESTS = "200"
    MAX_DB_CONNECTIONS      = "100"
    STATEMENT_TIMEOUT_MS    = "60000"
    CACHE_KEY_QUOTA         = "100000"
  }

  image               = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/saas-app:1.4.2"
  ecr_repository_arns = ["arn:aws:ecr:eu-west-1:111122223333:repository/saas-app"]

  data_bucket    = local.platform.data_bucket
  domain         = local.platform.domain
  hosted_zone_id = local.platform.hosted_zone_id
  dns_target     = local.platform.dns_target

  cluster_arn                = local.platform.cluster_arn
  vpc_id                     = local.platform.vpc_id
  subnet_ids                 = local.platform.subnet_ids
  service_security_group_ids = local.platform.service_security_group_ids

  # A silo tenant does not use the shared database.
  database = null

  # tenantctl provisions and migrates the dedicated database with its master login
  # (`tenants/<id>/db-admin`): admit the network it runs in (`[database]
  # admin_cidr_blocks` / `admin_security_group_ids` in tenantctl.toml).
  admin_cidr_blocks = ["10.42.200.0/24"]

  db_instance_class    = "db.t3.medium"
  db_allocated_storage = 50
  db_engine_version    = "16"

  # Keep the database (and a final snapshot) until the tenant is offboarded on purpose:
  # set deletion_protection = false and apply before destroying.
  deletion_protection = true
  skip_final_snapshot = false

  tags = {
    Environment = "production"
  }
}
