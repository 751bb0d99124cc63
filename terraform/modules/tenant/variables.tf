variable "tenant_id" {
  description = "Tenant identifier: lower-case letters, digits and single hyphens, starting with a letter, at most 52 characters (so that `tenant-<id>-exec` fits IAM's 64-character role name limit and `tenant_<id>` PostgreSQL's 63), and not a reserved name."
  type        = string

  # The same rule as TenantId::parse in tenantctl's src/tenant.rs, so the module refuses
  # what tenantctl refuses even when it is driven without tenantctl.
  validation {
    condition     = can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.tenant_id)) && length(var.tenant_id) <= 52
    error_message = "The tenant_id \"${var.tenant_id}\" (${length(var.tenant_id)} characters) is invalid: it must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ (lower-case letters, digits and single hyphens, starting with a letter) and be at most 52 characters long, so that IAM role `tenant-<id>-exec` fits in 64."
  }

  # Names that would collide with platform hostnames, PostgreSQL schemas or roles: the
  # same list as RESERVED in src/tenant.rs. tests/module_contract.rs parses this list and
  # compares it with RESERVED, so keep it a literal list of strings here.
  validation {
    condition = !contains([
      "www", "api", "admin", "app", "apps", "auth", "login", "mail", "smtp",
      "ftp", "ns", "ns1", "ns2", "dns", "cdn", "static", "assets", "status",
      "help", "support", "docs", "blog", "public", "pool", "postgres", "pg",
      "root", "system", "internal", "platform", "shared", "tenant",
      "tenants", "tenantctl", "ingress", "default", "localhost", "test",
    ], var.tenant_id)
    error_message = "The tenant_id \"${var.tenant_id}\" is a reserved name: it would collide with a platform hostname, PostgreSQL schema or role (the reserved names are RESERVED in tenantctl's src/tenant.rs)."
  }

  # Derived names of different tenants must never be equal: tenant "foo-exec" would own
  # `tenant-foo-exec`, which is tenant "foo"'s execution role (DERIVED_SUFFIXES in
  # src/tenant.rs).
  validation {
    condition     = !endswith(var.tenant_id, "-exec")
    error_message = "The tenant_id \"${var.tenant_id}\" must not end with \"-exec\": `tenant-<id>-exec` is another tenant's execution role name."
  }
}

variable "tier" {
  description = "Tenant tier: starter, growth or enterprise. The tier fixes the isolation model (see isolation)."
  type        = string

  validation {
    condition     = contains(["starter", "growth", "enterprise"], var.tier)
    error_message = "The tier \"${var.tier}\" is invalid: it must be one of starter, growth, enterprise."
  }
}

variable "isolation" {
  description = "Database isolation model, fixed by the tier: pool for starter (shared tables, row-level security), bridge for growth (own schema in the shared database), silo for enterprise (dedicated RDS instance, KMS key, security group and ECS service)."
  type        = string

  validation {
    condition     = contains(["pool", "bridge", "silo"], var.isolation)
    error_message = "The isolation \"${var.isolation}\" is invalid: it must be one of pool, bridge, silo."
  }

  # Tier::isolation in src/tenant.rs: the tier fixes the isolation model, and changing
  # isolation is a tier change (a move). An unknown tier is left to the tier's own
  # validation (lookup falls back to var.isolation) so it is reported once.
  # A rule that reads another variable is checked by `terraform plan`, not by
  # `terraform validate` (Terraform 1.11 treats the other variable as unknown there).
  validation {
    condition     = lookup({ starter = "pool", growth = "bridge", enterprise = "silo" }, var.tier, var.isolation) == var.isolation
    error_message = "The isolation \"${var.isolation}\" does not match the tier \"${var.tier}\": the tier fixes the isolation (starter -> pool, growth -> bridge, enterprise -> silo)."
  }
}

variable "dedicated_database" {
  description = "Keep a dedicated database (RDS instance, KMS key, security groups, db-admin secret) although isolation is not silo: set by tenantctl while a tenant moves into silo (the database is provisioned beside the source) or out of it (the source is retained until the move is finished). A silo tenant always has one; the tenant's login and secret follow isolation alone."
  type        = bool
  default     = false
}

variable "cpu" {
  description = "Fargate task CPU units: 256, 512, 1024, 2048 or 4096 (the sizes tenantctl's tier profiles allow)."
  type        = number

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.cpu)
    error_message = "The cpu ${var.cpu} is invalid: it must be a Fargate CPU size tenantctl allows: 256, 512, 1024, 2048 or 4096."
  }
}

variable "memory" {
  description = "Fargate task memory in MiB, a size Fargate offers with cpu: 512, 1024 or 2048 with cpu 256; 1024-4096 with 512; 2048-8192 with 1024; 4096-16384 with 2048; 8192-30720 with 4096 (above cpu 256 in steps of 1024)."
  type        = number

  # Checked by `terraform validate` too (it reads no other variable): the smallest and
  # largest memory of any pair below.
  validation {
    condition     = var.memory >= 512 && var.memory <= 30720 && floor(var.memory) == var.memory
    error_message = "The memory ${var.memory} is invalid: it must be a whole number of MiB between 512 and 30720 (and a size Fargate offers with the cpu)."
  }

  # TierProfile::validate in src/tenant.rs. Only checked for a cpu in the table: an
  # invalid cpu is reported by the cpu's own validation, once. Like the isolation rule,
  # it reads another variable, so `terraform plan` checks it and `terraform validate`
  # does not.
  validation {
    condition = !contains([256, 512, 1024, 2048, 4096], var.cpu) || contains(lookup({
      "256"  = [512, 1024, 2048]
      "512"  = range(1024, 4096 + 1, 1024)
      "1024" = range(2048, 8192 + 1, 1024)
      "2048" = range(4096, 16384 + 1, 1024)
      "4096" = range(8192, 30720 + 1, 1024)
    }, tostring(var.cpu), []), var.memory)
    error_message = "The cpu ${var.cpu} / memory ${var.memory} pair is not a valid Fargate task size: memory must be 512, 1024 or 2048 with cpu 256, and a multiple of 1024 in 1024-4096 with cpu 512, 2048-8192 with 1024, 4096-16384 with 2048, 8192-30720 with 4096."
  }
}

variable "limits" {
  description = "Extra environment variables for the container, typically the tier limits (e.g. RATE_LIMIT_PER_MINUTE). Keys must be environment variable names and must not collide with TENANT_ID, TENANT_TIER, TENANT_ISOLATION or DATABASE_SECRET."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.limits) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "The limits keys ${jsonencode([for k in keys(var.limits) : k if !can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])} are invalid: every limits key must be an environment variable name matching ^[A-Za-z_][A-Za-z0-9_]*$."
  }

  validation {
    condition     = length(setintersection(keys(var.limits), ["TENANT_ID", "TENANT_TIER", "TENANT_ISOLATION", "DATABASE_SECRET"])) == 0
    error_message = "The limits keys ${jsonencode(sort(setintersection(keys(var.limits), ["TENANT_ID", "TENANT_TIER", "TENANT_ISOLATION", "DATABASE_SECRET"])))} are reserved: TENANT_ID, TENANT_TIER, TENANT_ISOLATION and DATABASE_SECRET are set by the module."
  }
}

variable "image" {
  description = "Container image of the tenant application (the `app` container)."
  type        = string
}

variable "data_bucket" {
  description = "Name of the shared data S3 bucket; the tenant may only use the `tenants/<tenant_id>/` prefix."
  type        = string
}

variable "domain" {
  description = "Base domain; the tenant gets the record `<tenant_id>.<domain>`."
  type        = string
}

variable "hosted_zone_id" {
  description = "Route53 hosted zone that holds `domain`."
  type        = string
}

variable "dns_target" {
  description = "Where `<tenant_id>.<domain>` points: an alias record when zone_id is set (e.g. a load balancer's DNS name and zone), otherwise a CNAME (TTL 60) to name."
  type = object({
    name    = string
    zone_id = optional(string)
  })
}

variable "cluster_arn" {
  description = "ECS cluster for the tenant's ECS service (silo only)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tenant's database security group (silo only)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the silo tenant's RDS subnet group and ECS service (at least two AZs for RDS)."
  type        = list(string)
}

variable "service_security_group_ids" {
  description = "Shared security groups attached to the silo tenant's ECS service (e.g. the one the load balancer may reach). The dedicated database only admits the tenant's own service security group, which this module creates."
  type        = list(string)
  default     = []
}

variable "admin_cidr_blocks" {
  description = "Silo only: IPv4 networks (CIDR, e.g. the subnet tenantctl runs in, or a VPN's) also admitted to the dedicated database on 5432, so tenantctl can provision and migrate it with its `db-admin` login. Default none: only the tenant's own ECS service. Never `0.0.0.0/0`: every other tenant's task in the VPC would reach the database."
  type        = list(string)
  default     = []

  # The same rule as `[database] admin_cidr_blocks` in tenantctl's src/config.rs
  # (check_admin_cidr): a canonical IPv4 network, its address without host bits.
  validation {
    condition     = alltrue([for c in var.admin_cidr_blocks : can(regex("^(0|[1-9][0-9]{0,2})(\\.(0|[1-9][0-9]{0,2})){3}/([0-9]|[12][0-9]|3[0-2])$", c)) && can(cidrnetmask(c)) && try(cidrhost(c, 0) == split("/", c)[0], false)])
    error_message = "The admin_cidr_blocks ${jsonencode([for c in var.admin_cidr_blocks : c if !(can(regex("^(0|[1-9][0-9]{0,2})(\\.(0|[1-9][0-9]{0,2})){3}/([0-9]|[12][0-9]|3[0-2])$", c)) && can(cidrnetmask(c)) && try(cidrhost(c, 0) == split("/", c)[0], false))])} are invalid: each must be an IPv4 network in CIDR notation whose address has no host bits set, such as 10.20.0.0/24 (not 10.20.0.5/24)."
  }

  validation {
    condition     = !contains(var.admin_cidr_blocks, "0.0.0.0/0")
    error_message = "The admin_cidr_blocks contain 0.0.0.0/0: that admits every address, including every other tenant's task in the VPC. Name the network tenantctl connects from."
  }

  validation {
    condition     = length(distinct(var.admin_cidr_blocks)) == length(var.admin_cidr_blocks)
    error_message = "The admin_cidr_blocks name ${jsonencode(distinct([for i, c in var.admin_cidr_blocks : c if index(var.admin_cidr_blocks, c) != i]))} more than once: each network may appear once."
  }
}

variable "admin_security_group_ids" {
  description = "Silo only: security groups (e.g. the one of the host or task tenantctl runs on) also admitted to the dedicated database on 5432, so tenantctl can provision and migrate it with its `db-admin` login. Default none: only the tenant's own ECS service."
  type        = list(string)
  default     = []

  # The same rule as `[database] admin_security_group_ids` in tenantctl's src/config.rs.
  validation {
    condition     = alltrue([for g in var.admin_security_group_ids : can(regex("^sg-([0-9a-f]{8}|[0-9a-f]{17})$", g))])
    error_message = "The admin_security_group_ids ${jsonencode([for g in var.admin_security_group_ids : g if !can(regex("^sg-([0-9a-f]{8}|[0-9a-f]{17})$", g))])} are invalid: each must be a security group id, `sg-` and 8 or 17 lower-case hex digits."
  }

  validation {
    condition     = length(distinct(var.admin_security_group_ids)) == length(var.admin_security_group_ids)
    error_message = "The admin_security_group_ids name ${jsonencode(distinct([for i, g in var.admin_security_group_ids : g if index(var.admin_security_group_ids, g) != i]))} more than once: each security group may appear once."
  }
}

variable "database" {
  description = "The shared PostgreSQL used by pool and bridge tenants. Not used by silo tenants (may be null for them)."
  type = object({
    host   = string
    port   = number
    dbname = string
  })
  default = null

  validation {
    condition     = var.isolation == "silo" || var.database != null
    error_message = "The database is null but the isolation is \"${var.isolation}\": it must be set for pool and bridge tenants (only silo tenants have their own database)."
  }
}

variable "silo_database_override" {
  description = "Local emulator only: when set, the silo tenant's secrets point at this PostgreSQL (tenant database `tenant_<tenant_id>`; db-admin uses the given dbname) instead of at the RDS instance. The RDS instance is still created."
  type = object({
    host   = string
    port   = number
    dbname = string
  })
  default = null
}

variable "db_instance_class" {
  description = "RDS instance class of the silo database."
  type        = string
  default     = "db.t3.micro"
}

variable "db_allocated_storage" {
  description = "RDS allocated storage in GiB of the silo database."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20
    error_message = "The db_allocated_storage ${var.db_allocated_storage} is invalid: it must be at least 20 GiB (the smallest storage RDS allows for PostgreSQL)."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL engine version of the silo database (a major version such as \"16\" lets RDS pick and upgrade the minor version)."
  type        = string
  default     = "16"
}

variable "deletion_protection" {
  description = "RDS deletion protection of the silo database. Set to false (and apply) before destroying the tenant."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Skip the final snapshot when the silo database is destroyed. When false the snapshot is named final_snapshot_identifier (default `tenant-<tenant_id>-final`)."
  type        = bool
  default     = false
}

variable "final_snapshot_identifier" {
  description = "Name of the final snapshot of the silo database, or null for `tenant-<tenant_id>-final`. tenantctl sets a unique name per removal (`tenant-<tenant_id>-final-<time>`) so the same id can be removed twice."
  type        = string
  default     = null

  validation {
    condition     = var.final_snapshot_identifier == null || can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,254}$", var.final_snapshot_identifier))
    error_message = "The final_snapshot_identifier is invalid: it must start with a letter and hold only letters, digits and hyphens (at most 255)."
  }
}

variable "tenant_key" {
  description = "Give the tenant a KMS key of its own for its secrets, log group and exports (always on while it has a dedicated database). Deleting the key (crypto-shredding) makes every copy encrypted under it unreadable."
  type        = bool
  default     = false
}

variable "key_deletion_window_days" {
  description = "Pending window of the tenant's KMS key when it is destroyed: 7 to 30 days, during which the deletion can still be cancelled."
  type        = number
  default     = 30

  validation {
    condition     = var.key_deletion_window_days >= 7 && var.key_deletion_window_days <= 30 && floor(var.key_deletion_window_days) == var.key_deletion_window_days
    error_message = "The key_deletion_window_days ${var.key_deletion_window_days} is invalid: it must be a whole number of days between 7 and 30 (the KMS limits)."
  }
}

variable "secret_recovery_window_days" {
  description = "Secrets Manager recovery window when a secret is deleted: 0 (delete immediately, so the tenant id can be reused at once) or 7 to 30 days."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "The secret_recovery_window_days ${var.secret_recovery_window_days} is invalid: it must be 0 (delete at once) or between 7 and 30 (the Secrets Manager limits)."
  }
}

variable "secret_version" {
  description = "Version of the write-only secret values (secret_string_wo_version, password_wo_version). Increase it to generate and write new passwords."
  type        = number
  default     = 1

  validation {
    condition     = var.secret_version >= 1 && floor(var.secret_version) == var.secret_version
    error_message = "The secret_version ${var.secret_version} is invalid: it must be a whole number >= 1."
  }
}

variable "ecr_repository_arns" {
  description = "ECR repositories the execution role may pull the image from. Empty (default) grants no ECR access, for public images. When set, ecr:GetAuthorizationToken is also granted (that API has no resource-level permissions)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every taggable resource, beside tenant, tier, isolation and managed-by (which the module sets and these cannot change)."
  type        = map(string)
  default     = {}
}

variable "alarms" {
  description = "The tenant's CloudWatch alarms: the namespace the application publishes Requests, Errors and Latency (ms) in, with TenantId and Tier dimensions; the tier's thresholds; the SNS topic to notify (null: alarms without actions); and, for a dedicated database, the connection count to alarm at. null: no alarms."
  type = object({
    namespace          = string
    topic_arn          = optional(string)
    error_rate_percent = number
    p99_latency_ms     = number
    db_connections     = number
  })
  default = null

  validation {
    condition     = var.alarms == null || try(var.alarms.error_rate_percent >= 1 && var.alarms.error_rate_percent <= 100 && var.alarms.p99_latency_ms >= 1, false)
    error_message = "The alarms thresholds are invalid: error_rate_percent must be between 1 and 100 and p99_latency_ms at least 1."
  }
}
