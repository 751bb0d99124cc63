# Rendered by tenantctl from templates/tenant/variables.tf; `tenantctl render` rewrites it.

variable "aws_region" {
  description = "AWS region of the provider."
  type        = string
}

variable "aws_profile" {
  description = "Named AWS profile, or null for the default credential chain."
  type        = string
  default     = null
}

variable "aws_endpoint_url" {
  description = "Endpoint of an AWS emulator (AWS_ENDPOINT_URL), or null for real AWS."
  type        = string
  default     = null
}

variable "tenants" {
  description = "The tenants this root holds, by id: one tenant module instance each."
  type = map(object({
    tenant_id      = string
    tier           = string
    isolation      = string
    cpu            = number
    memory         = number
    limits         = map(string)
    image          = string
    data_bucket    = string
    domain         = string
    hosted_zone_id = string
    # A move into or out of silo keeps the dedicated database beside the other side.
    dedicated_database = optional(bool, false)
    dns_target = object({
      name    = string
      zone_id = optional(string)
    })
    cluster_arn                = string
    vpc_id                     = string
    subnet_ids                 = list(string)
    service_security_group_ids = list(string)
    admin_cidr_blocks          = optional(list(string), [])
    admin_security_group_ids   = optional(list(string), [])
    database = object({
      host   = string
      port   = number
      dbname = string
    })
    silo_database_override = optional(object({
      host   = string
      port   = number
      dbname = string
    }))
    db_instance_class           = string
    db_allocated_storage        = number
    deletion_protection         = bool
    skip_final_snapshot         = bool
    final_snapshot_identifier   = optional(string)
    tenant_key                  = optional(bool, false)
    key_deletion_window_days    = optional(number, 30)
    secret_recovery_window_days = number
    secret_version              = number
    tags                        = map(string)
    alarms = optional(object({
      namespace          = string
      topic_arn          = optional(string)
      error_rate_percent = number
      p99_latency_ms     = number
      db_connections     = number
    }))
  }))
}
