output "instance_groups" {
  description = "Regional managed instance group name per region."
  value       = { for region, group in google_compute_region_instance_group_manager.workers : region => group.name }
}

output "service_accounts" {
  description = "Service account email per role (submitter, worker, server, viewer)."
  value       = { for role, account in google_service_account.role : role => account.email }
}

output "bucket" {
  description = "The staging bucket; the server's storage.blobs is gs://<bucket>/spillway."
  value       = google_storage_bucket.staging.name
}

output "pools_toml" {
  description = "The [[pools]] of spillway.toml for the server: one compute_engine pool per region, all serving the same queues."
  value = join("\n", [
    for region in var.regions : <<-EOT
    [[pools]]
    name = "${local.pool_names[region]}"
    provider = "compute_engine"
    queues = ${jsonencode(var.queues)}
    min = ${var.min_per_region}
    max = ${var.max_per_region}
    concurrency = ${var.concurrency}
    compute_engine = { project = "${var.project}", region = "${region}", instance_group = "${google_compute_region_instance_group_manager.workers[region].name}" }
    EOT
  ])
}
