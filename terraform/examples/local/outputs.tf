output "platform" {
  description = "Outputs of the platform module."
  value       = module.platform
}

output "tenants" {
  description = "Outputs of the tenant module, by tenant id."
  value       = module.tenant
}
