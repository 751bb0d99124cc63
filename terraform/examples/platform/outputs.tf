output "platform" {
  description = "Outputs of the platform module: what tenants attach to."
  value       = module.platform
}
