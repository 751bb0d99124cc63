variable "name" {
  description = "Name prefix of the shared resources (VPC, cluster, security groups, load balancer)."
  type        = string
  default     = "tenantctl"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name))
    error_message = "The name must be 2 to 22 characters of lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "domain" {
  description = "Base domain of the tenants (`<tenant_id>.<domain>`); a public Route53 hosted zone is created for it."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "The domain must be a lower-case DNS name such as example.com."
  }
}

variable "data_bucket" {
  description = "Name of the shared data S3 bucket (tenants use the `tenants/<tenant_id>/` prefix)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.data_bucket))
    error_message = "The data_bucket must be a valid S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; the private subnets are its /24s number 0 and 1, the public ones (load balancer or NAT gateway only) 100 and 101."
  type        = string
  default     = "10.42.0.0/16"
}

variable "create_load_balancer" {
  description = "Create an internet-facing ALB (in two public subnets with an internet gateway) as the tenants' DNS target. When false the DNS target is dns_target_name, a CNAME target."
  type        = bool
  default     = true
}

variable "create_nat_gateway" {
  description = "Create one NAT gateway (in a public subnet) so that tasks in the private subnets can pull images and reach AWS APIs. Without it, provide VPC endpoints yourself."
  type        = bool
  default     = true
}

variable "dns_target_name" {
  description = "DNS target of the tenant records when create_load_balancer is false; defaults to `ingress.<domain>`."
  type        = string
  default     = null
}

variable "certificate_arn" {
  description = "ACM (or IAM server) certificate of the load balancer's HTTPS listener, typically for `*.<domain>`. Required when create_load_balancer is true: the load balancer serves HTTPS only and redirects HTTP to it."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:(acm|iam):", var.certificate_arn))
    error_message = "The certificate_arn \"${coalesce(var.certificate_arn, "null")}\" is invalid: it must be the ARN of an ACM certificate (arn:aws:acm:...) or an IAM server certificate (arn:aws:iam:...)."
  }

  # Reads another variable: checked by `terraform plan`, not by `terraform validate`.
  validation {
    condition     = !var.create_load_balancer || var.certificate_arn != null
    error_message = "The certificate_arn is null but create_load_balancer is true: the load balancer listens on HTTPS only (HTTP is redirected), so it needs a certificate for *.<domain>. Set certificate_arn, or create_load_balancer = false."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener (TLS 1.2 and 1.3 only by default)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "log_bucket" {
  description = "Name of the bucket the module creates for access logs: the data bucket's server access logs (`s3/<data_bucket>/`), the load balancer's (`alb/`) and the VPC flow logs (`AWSLogs/`). Defaults to `<data_bucket>-logs`."
  type        = string
  default     = null

  validation {
    condition     = var.log_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.log_bucket))
    error_message = "The log_bucket must be a valid S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."
  }

  # Reads another variable: checked by `terraform plan`, not by `terraform validate`.
  validation {
    condition     = var.log_bucket != null || length(var.data_bucket) <= 58
    error_message = "The data_bucket \"${var.data_bucket}\" is longer than 58 characters, so the default log bucket `<data_bucket>-logs` would exceed S3's 63: set log_bucket."
  }
}

variable "log_expiration_days" {
  description = "Days the access logs and flow logs are kept in the log bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.log_expiration_days >= 1 && floor(var.log_expiration_days) == var.log_expiration_days
    error_message = "The log_expiration_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent version of a data bucket object (an overwritten object, or one deleted with its tenant) is kept before it expires."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "The noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "app_port" {
  description = "Container port of the tenant application; the shared service security group admits it from the load balancer."
  type        = number
  default     = 8080
}

variable "force_destroy" {
  description = "Allow destroying the data and log buckets and the hosted zone while they still hold objects or records, and the load balancer (no deletion protection): emulators and throwaway accounts."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every taggable resource (on top of ManagedBy)."
  type        = map(string)
  default     = {}
}

variable "create_dashboard" {
  description = "Create the CloudWatch dashboard `<name>-migrations` of the metrics `tenantctl db migrate` publishes (namespace metrics_namespace)."
  type        = bool
  default     = true
}

variable "metrics_namespace" {
  description = "CloudWatch namespace `tenantctl db migrate` publishes its run metrics to (`[metrics] namespace` in tenantctl.toml); the dashboard's widgets read it."
  type        = string
  default     = "Tenantctl/Migrations"

  # CloudWatch's rules for a custom namespace; `AWS/` is reserved for AWS services.
  validation {
    condition     = can(regex("^[A-Za-z0-9.#:/ _-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/") && trimspace(var.metrics_namespace) == var.metrics_namespace
    error_message = "The metrics_namespace \"${var.metrics_namespace}\" is invalid: it must be 1 to 255 letters, digits and `. - _ / # : ` or spaces, neither start nor end with a space, and not start with `AWS/` (reserved for AWS services)."
  }
}

variable "deny_insecure_transport" {
  description = "Deny every request to the data bucket that is not over TLS (aws:SecureTransport). Turn off only for an emulator reached over plain HTTP, which the policy would lock out."
  type        = bool
  default     = true
}
