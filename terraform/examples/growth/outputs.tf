output "tenant" {
  description = "Outputs of the tenant module (no secret values)."
  value       = module.tenant
}
