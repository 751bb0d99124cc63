output "vpc_id" {
  description = "ID of the VPC."
  value       = try(aws_vpc.this.id, null)
}

output "subnet_ids" {
  description = "IDs of the private subnets (two AZs) for tenant services and databases."
  value       = try(aws_subnet.private[*].id, null)
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (empty without load balancer and NAT gateway)."
  value       = try(aws_subnet.public[*].id, null)
}

output "cluster_arn" {
  description = "ARN of the shared ECS cluster."
  value       = try(aws_ecs_cluster.this.arn, null)
}

output "cluster_name" {
  description = "Name of the shared ECS cluster."
  value       = try(aws_ecs_cluster.this.name, null)
}

output "data_bucket" {
  description = "Name of the shared data bucket."
  value       = try(aws_s3_bucket.data.bucket, null)
}

output "hosted_zone_id" {
  description = "ID of the public hosted zone of domain."
  value       = try(aws_route53_zone.this.zone_id, null)
}

output "name_servers" {
  description = "Name servers of the hosted zone (delegate the domain to them)."
  value       = try(aws_route53_zone.this.name_servers, null)
}

output "domain" {
  description = "Base domain of the tenants."
  value       = var.domain
}

output "dns_target" {
  description = "Target of the tenant records: the load balancer (name and zone_id, alias records) or dns_target_name (zone_id null, CNAME records)."
  value = try(
    var.create_load_balancer ? {
      name    = aws_lb.this[0].dns_name
      zone_id = aws_lb.this[0].zone_id
      } : {
      name    = coalesce(var.dns_target_name, "ingress.${var.domain}")
      zone_id = null
    },
    null,
  )
}

output "service_security_group_ids" {
  description = "Shared security groups for tenant ECS services."
  value       = try([aws_security_group.services.id], null)
}

output "load_balancer_arn" {
  description = "ARN of the load balancer, null when create_load_balancer is false."
  value       = try(aws_lb.this[0].arn, null)
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard of `tenantctl db migrate` runs, null when create_dashboard is false."
  value       = try(aws_cloudwatch_dashboard.migrations[0].dashboard_name, null)
}

output "log_bucket" {
  description = "Name of the log bucket (data bucket access logs, load balancer logs, VPC flow logs)."
  value       = try(aws_s3_bucket.logs.bucket, null)
}

output "alarm_topic_arn" {
  description = "ARN of the SNS topic tenant alarms notify (subscribe the on-call to it)."
  value       = aws_sns_topic.alarms.arn
}
