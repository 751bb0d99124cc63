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
  description = "ACM certificate for an HTTPS listener on the load balancer. When null the load balancer only listens on HTTP (port 80)."
  type        = string
  default     = null
}

variable "app_port" {
  description = "Container port of the tenant application; the shared service security group admits it from the load balancer."
  type        = number
  default     = 8080
}

variable "force_destroy" {
  description = "Allow destroying the data bucket and hosted zone while they still hold objects or records (emulators and throwaway accounts)."
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
