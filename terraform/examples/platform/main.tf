# The shared platform for a real account: VPC with NAT gateway, ECS cluster, data and log
# buckets, hosted zone, and an internet-facing load balancer that serves HTTPS only (HTTP
# is redirected) with a certificate for *.<domain>.
# Every value is a literal placeholder; `terraform validate` needs no AWS account.

provider "aws" {
  region = "eu-west-1"
}

module "platform" {
  source = "../../modules/platform"

  name        = "example-saas"
  domain      = "tenants.example.com"
  data_bucket = "example-saas-tenant-data"

  create_load_balancer = true
  # An ACM certificate for *.tenants.example.com, issued in the platform's region. The
  # hosted zone is created here: create the platform with create_load_balancer = false
  # first, validate the certificate with DNS records in that zone, then enable the load
  # balancer.
  certificate_arn = "arn:aws:acm:eu-west-1:111122223333:certificate/0123abcd-4567-89ef-0123-456789abcdef"

  # Noncurrent versions (objects overwritten, or deleted with their tenant) expire after
  # 30 days; the log bucket (example-saas-tenant-data-logs) keeps logs for a year.
  noncurrent_version_expiration_days = 30
  log_expiration_days                = 365

  tags = {
    Environment = "production"
  }
}
