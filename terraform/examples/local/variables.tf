variable "endpoint" {
  description = "URL of the AWS emulator (moto), e.g. http://127.0.0.1:5000."
  type        = string
  default     = "http://127.0.0.1:5000"
}

variable "region" {
  description = "AWS region the emulator answers for."
  type        = string
  default     = "us-east-1"
}

variable "domain" {
  description = "Base domain of the example tenants."
  type        = string
  default     = "tenants.example.test"
}

variable "data_bucket" {
  description = "Name of the example data bucket."
  type        = string
  default     = "tenantctl-local-data"
}

variable "shared_database" {
  description = "The shared PostgreSQL of the pool and bridge tenants (nothing connects to it during apply)."
  type = object({
    host   = string
    port   = number
    dbname = string
  })
  default = {
    host   = "127.0.0.1"
    port   = 5432
    dbname = "tenantctl"
  }
}

variable "enterprise_deletion_protection" {
  description = "Deletion protection of the enterprise tenant's RDS instance; apply false before destroy."
  type        = bool
  default     = true
}
