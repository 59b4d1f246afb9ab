# Spillway workers on Compute Engine: one regional managed instance group of `spillway worker`
# VMs per region, a staging bucket, and one service account per role.

locals {
  # One service account per role, each with only what that role does on Google Cloud.
  # Spillway's own token roles (submitter, worker, viewer, admin) decide what each may do in
  # Spillway; these decide what each may do in the project.
  roles = {
    submitter = "Submits jobs to Spillway (directly or by publishing to Pub/Sub)"
    worker    = "Spillway worker VMs"
    server    = "Spillway server: staging bucket, resizing worker groups, Pub/Sub bridge"
    viewer    = "Reads Spillway and worker metrics"
  }

  registry_host = split("/", var.image)[0]
  # COS pulls from Artifact Registry / Container Registry with the VM's service account once
  # docker-credential-gcr is configured for that host.
  google_registry = can(regex("(docker\\.pkg\\.dev|gcr\\.io)$", local.registry_host))

  pool_names = { for region in var.regions : region => "${var.name_prefix}-${region}" }
}

# --- Staging bucket --------------------------------------------------------------------------

resource "google_storage_bucket" "staging" {
  project                     = var.project
  name                        = var.bucket_name
  location                    = var.bucket_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  dynamic "lifecycle_rule" {
    for_each = var.staging_retention_days > 0 ? [var.staging_retention_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }
}

# --- Service accounts and least-privilege IAM ------------------------------------------------

resource "google_service_account" "role" {
  for_each = local.roles

  project      = var.project
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "Spillway ${each.key}"
  description  = each.value
}

# Server: all staging goes through the server's API (workers and submitters never touch the
# bucket), so only the server reads, writes and deletes staged objects.
resource "google_storage_bucket_iam_member" "server_objects" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.role["server"].member
}

# Server: resize the worker groups and stop named instances, nothing else in Compute Engine.
# A custom role, because the predefined roles/compute.instanceAdmin.v1 could also create,
# delete and reconfigure any VM in the project. It is granted on the project (Compute Engine
# has no per-group IAM policy); keep the workers in a project of their own to scope it further.
resource "google_project_iam_custom_role" "pool_resizer" {
  project = var.project
  role_id = replace("${var.name_prefix}_pool_resizer", "-", "_")
  title   = "Spillway pool resizer"
  # Exactly the list in docs/compute-engine.md. get: the group and listManagedInstances;
  # update: resize and deleteInstances (stopping named workers); operations: polling what those
  # return. The groups create and delete VMs as the Google APIs service agent, so no
  # compute.instances.* or iam.serviceAccounts.actAs is needed.
  description = "Resize Spillway's managed instance groups, list their instances, delete named ones, poll operations."
  permissions = [
    "compute.instanceGroupManagers.get",
    "compute.instanceGroupManagers.update",
    "compute.regionOperations.get",
    "compute.zoneOperations.get",
  ]
}

resource "google_project_iam_member" "server_pool_resizer" {
  project = var.project
  role    = google_project_iam_custom_role.pool_resizer.id
  member  = google_service_account.role["server"].member
}

# Server on GKE: its Kubernetes service account acts as the server service account (the Helm
# chart's serviceAccount.annotations then names it with iam.gke.io/gcp-service-account).
resource "google_service_account_iam_member" "server_workload_identity" {
  count = var.server_workload_identity == null ? 0 : 1

  service_account_id = google_service_account.role["server"].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project}.svc.id.goog[${var.server_workload_identity}]"
}

# Server: the Pub/Sub bridge (`spillway bridge pubsub`) pulls the subscription.
resource "google_pubsub_subscription_iam_member" "server_subscriber" {
  count = var.pubsub_subscription == null ? 0 : 1

  project      = var.project
  subscription = var.pubsub_subscription
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.role["server"].member
}

# Submitter: publishing work is all it does on Google Cloud; it reaches Spillway with a
# Spillway token of the submitter role, and uploads inputs through the server's API.
resource "google_pubsub_topic_iam_member" "submitter_publisher" {
  count = var.pubsub_topic == null ? 0 : 1

  project = var.project
  topic   = var.pubsub_topic
  role    = "roles/pubsub.publisher"
  member  = google_service_account.role["submitter"].member
}

# Worker: its Spillway token, its image, and writing its logs and metrics. No bucket access:
# inputs and results go through the server.
resource "google_secret_manager_secret_iam_member" "worker_token" {
  project   = split("/", var.worker_token_secret)[1]
  secret_id = var.worker_token_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.role["worker"].member
}

resource "google_artifact_registry_repository_iam_member" "worker_image" {
  count = var.image_repository == null ? 0 : 1

  project    = split("/", var.image_repository)[1]
  location   = split("/", var.image_repository)[3]
  repository = split("/", var.image_repository)[5]
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.role["worker"].member
}

# Worker, only when tasks themselves read or write the staging bucket (as seed 002's engine
# reads its input objects); Spillway's own inputs and results never need it.
resource "google_storage_bucket_iam_member" "worker_objects" {
  count = var.tasks_use_bucket ? 1 : 0

  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectUser"
  member = google_service_account.role["worker"].member
}

resource "google_project_iam_member" "worker_logging" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"])

  project = var.project
  role    = each.value
  member  = google_service_account.role["worker"].member
}

# Viewer: reads metrics and dashboards; nothing in the bucket, nothing it could change.
resource "google_project_iam_member" "viewer_monitoring" {
  project = var.project
  role    = "roles/monitoring.viewer"
  member  = google_service_account.role["viewer"].member
}

# --- Worker VMs -------------------------------------------------------------------------------

data "google_compute_image" "cos" {
  family  = "cos-stable"
  project = "cos-cloud"
}

# One template per region, so each region's workers register with their own pool name.
resource "google_compute_instance_template" "worker" {
  for_each = toset(var.regions)

  project      = var.project
  name_prefix  = "${var.name_prefix}-${each.value}-"
  region       = each.value
  machine_type = var.machine_type
  tags         = ["spillway-worker"]
  labels = {
    spillway-pool = local.pool_names[each.value]
  }

  disk {
    source_image = data.google_compute_image.cos.self_link
    auto_delete  = true
    boot         = true
    disk_size_gb = 50
  }

  network_interface {
    network = var.network
    dynamic "access_config" {
      for_each = var.external_ip ? [1] : []
      content {}
    }
  }

  service_account {
    email  = google_service_account.role["worker"].email
    scopes = ["cloud-platform"]
  }

  # Spot: preemptible at any time with ~30 s notice; the group recreates deleted VMs to keep its
  # target size. Standard: live-migrated through host maintenance.
  scheduling {
    provisioning_model          = var.spot ? "SPOT" : "STANDARD"
    preemptible                 = var.spot
    automatic_restart           = !var.spot
    on_host_maintenance         = var.spot ? "TERMINATE" : "MIGRATE"
    instance_termination_action = var.spot ? "DELETE" : null
  }

  shielded_instance_config {
    enable_secure_boot = true
  }

  metadata = {
    # The systemd unit in cloud-init.yaml.tftpl runs the worker and gives it SIGTERM on
    # preemption or stop (see there for the timing).
    user-data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
      image               = var.image
      registry_host       = local.google_registry ? local.registry_host : ""
      server_url          = var.server_url
      pool                = local.pool_names[each.value]
      queues              = join(",", var.queues)
      concurrency         = var.concurrency
      grace_seconds       = var.grace_seconds
      worker_token_secret = var.worker_token_secret
    })
    google-logging-enabled    = "true"
    google-monitoring-enabled = "true"
    block-project-ssh-keys    = "true"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "workers" {
  for_each = toset(var.regions)

  project            = var.project
  name               = local.pool_names[each.value]
  region             = each.value
  base_instance_name = local.pool_names[each.value]

  version {
    instance_template = google_compute_instance_template.worker[each.value].id
  }

  # Spillway's autoscaler owns the size (instanceGroupManagers resize); Terraform only sets the
  # starting size and must not undo the autoscaler's later changes.
  target_size = var.min_per_region

  # A new template reaches VMs only as they are recreated: a rollout never kills running work.
  update_policy {
    type                         = "OPPORTUNISTIC"
    minimal_action               = "REPLACE"
    instance_redistribution_type = "NONE" # never move VMs between zones behind Spillway's back
    max_surge_fixed              = 0
    # A regional group takes 0 or at least its number of zones (at most 4); one must be > 0.
    max_unavailable_fixed = 4
  }

  lifecycle {
    ignore_changes = [target_size]
  }
}
