variable "tenant_id" {
  description = "Tenant identifier: lower-case letters, digits and single hyphens, starting with a letter, at most 52 characters (so that `tenant-<id>-exec` fits IAM's 64-character role name limit and `tenant_<id>` PostgreSQL's 63)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.tenant_id)) && length(var.tenant_id) <= 52
    error_message = "The tenant_id must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and be at most 52 characters long."
  }
}

variable "tier" {
  description = "Tenant tier: starter, growth or enterprise."
  type        = string

  validation {
    condition     = contains(["starter", "growth", "enterprise"], var.tier)
    error_message = "The tier must be one of: starter, growth, enterprise."
  }
}

variable "isolation" {
  description = "Database isolation model: pool (shared tables, row-level security), bridge (own schema in the shared database) or silo (dedicated RDS instance, KMS key, security group and ECS service)."
  type        = string

  validation {
    condition     = contains(["pool", "bridge", "silo"], var.isolation)
    error_message = "The isolation must be one of: pool, bridge, silo."
  }
}

variable "cpu" {
  description = "Fargate task CPU units (256, 512, 1024, 2048, 4096, 8192 or 16384)."
  type        = number

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "The cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Fargate task memory in MiB (must be a valid combination with cpu)."
  type        = number

  validation {
    condition     = var.memory >= 512 && var.memory <= 122880 && floor(var.memory) == var.memory
    error_message = "The memory must be a whole number of MiB between 512 and 122880."
  }
}

variable "limits" {
  description = "Extra environment variables for the container, typically the tier limits (e.g. RATE_LIMIT_PER_MINUTE). Keys must be environment variable names and must not collide with TENANT_ID, TENANT_TIER, TENANT_ISOLATION or DATABASE_SECRET."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.limits) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "Every limits key must be an environment variable name matching ^[A-Za-z_][A-Za-z0-9_]*$."
  }

  validation {
    condition     = length(setintersection(keys(var.limits), ["TENANT_ID", "TENANT_TIER", "TENANT_ISOLATION", "DATABASE_SECRET"])) == 0
    error_message = "The limits keys TENANT_ID, TENANT_TIER, TENANT_ISOLATION and DATABASE_SECRET are reserved."
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
    error_message = "The database must be set for pool and bridge tenants."
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
    error_message = "The db_allocated_storage must be at least 20 GiB."
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
  description = "Skip the final snapshot when the silo database is destroyed. When false the snapshot is named `tenant-<tenant_id>-final`."
  type        = bool
  default     = false
}

variable "secret_recovery_window_days" {
  description = "Secrets Manager recovery window when a secret is deleted: 0 (delete immediately, so the tenant id can be reused at once) or 7 to 30 days."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "The secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

variable "secret_version" {
  description = "Version of the write-only secret values (secret_string_wo_version, password_wo_version). Increase it to generate and write new passwords."
  type        = number
  default     = 1

  validation {
    condition     = var.secret_version >= 1 && floor(var.secret_version) == var.secret_version
    error_message = "The secret_version must be a whole number >= 1."
  }
}

variable "ecr_repository_arns" {
  description = "ECR repositories the execution role may pull the image from. Empty (default) grants no ECR access, for public images. When set, ecr:GetAuthorizationToken is also granted (that API has no resource-level permissions)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every taggable resource (on top of TenantId, Tier, Isolation and ManagedBy)."
  type        = map(string)
  default     = {}
}
