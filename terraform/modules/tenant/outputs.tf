output "tenant_id" {
  description = "Tenant identifier."
  value       = var.tenant_id
}

output "tier" {
  description = "Tenant tier."
  value       = var.tier
}

output "isolation" {
  description = "Database isolation model (pool, bridge or silo)."
  value       = var.isolation
}

output "task_role_name" {
  description = "Name of the tenant's ECS task role (`tenant-<id>`)."
  value       = try(aws_iam_role.task.name, null)
}

output "task_role_arn" {
  description = "ARN of the tenant's ECS task role."
  value       = try(aws_iam_role.task.arn, null)
}

output "execution_role_name" {
  description = "Name of the tenant's ECS execution role (`tenant-<id>-exec`)."
  value       = try(aws_iam_role.execution.name, null)
}

output "execution_role_arn" {
  description = "ARN of the tenant's ECS execution role."
  value       = try(aws_iam_role.execution.arn, null)
}

output "task_definition_family" {
  description = "ECS task definition family (`tenant-<id>`)."
  value       = try(aws_ecs_task_definition.this.family, null)
}

output "task_definition_arn" {
  description = "ARN of the current task definition revision."
  value       = try(aws_ecs_task_definition.this.arn, null)
}

output "log_group_name" {
  description = "CloudWatch log group of the tenant (`/tenants/<id>`)."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}

output "secret_arns" {
  description = "ARNs of the tenant's secrets by short name: db, and db-admin while the tenant has a dedicated database (silo, or a move into or out of silo)."
  value = try(merge(
    { db = aws_secretsmanager_secret.db.arn },
    local.dedicated ? { db-admin = aws_secretsmanager_secret.db_admin[0].arn } : {},
  ), null)
}

output "db_secret_arn" {
  description = "ARN of the `tenants/<id>/db` secret (what the container gets as DATABASE_SECRET)."
  value       = try(aws_secretsmanager_secret.db.arn, null)
}

output "dns_fqdn" {
  description = "Fully qualified name of the tenant's DNS record."
  value       = try(aws_route53_record.this.fqdn, null)
}

output "database" {
  description = "Where the tenant's database login points (no password): host, port, dbname, username, and schema (bridge only, otherwise null)."
  value = try({
    host     = local.db_connection.host
    port     = local.db_connection.port
    dbname   = local.db_connection.dbname
    username = local.db_username
    schema   = local.db_schema
  }, null)
}

output "rds_instance_identifier" {
  description = "Identifier of the dedicated RDS instance (silo), otherwise null."
  value       = try(aws_db_instance.this[0].identifier, null)
}

output "rds_address" {
  description = "Address of the dedicated RDS instance (silo), otherwise null."
  value       = try(aws_db_instance.this[0].address, null)
}

output "kms_key_arn" {
  description = "ARN of the tenant's KMS key (tenant_key, or a dedicated database), otherwise null."
  value       = try(aws_kms_key.this[0].arn, null)
}

output "ecs_service_name" {
  description = "Name of the tenant's ECS service (silo), otherwise null."
  value       = try(aws_ecs_service.this[0].name, null)
}

output "db_security_group_id" {
  description = "Security group of the dedicated database (silo), otherwise null."
  value       = try(aws_security_group.db[0].id, null)
}

output "service_security_group_id" {
  description = "The tenant's own security group on its ECS service, the only source the dedicated database admits (silo), otherwise null."
  value       = try(aws_security_group.service[0].id, null)
}
