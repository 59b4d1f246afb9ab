variable "project" {
  description = "The Google Cloud project that holds the workers, the bucket and the service accounts."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name (and of the pool names: <prefix>-<region>)."
  type        = string
  default     = "spillway"

  validation {
    # Service account ids are 6-30 characters: "<prefix>-submitter" must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix))
    error_message = "name_prefix must be 1-20 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "regions" {
  description = "Regions to run workers in: one regional managed instance group (and one Spillway pool) per region."
  type        = list(string)

  validation {
    condition     = length(var.regions) > 0 && length(var.regions) == length(distinct(var.regions))
    error_message = "regions must list at least one region, each once."
  }
}

variable "machine_type" {
  description = "Machine type of the worker VMs."
  type        = string
  default     = "e2-standard-4"
}

variable "spot" {
  description = "Run the workers as Spot VMs (cheaper, preemptible with ~30 s notice)."
  type        = bool
  default     = true
}

variable "image" {
  description = "Container image with the spillway binary (built from the repository's Dockerfile), e.g. europe-docker.pkg.dev/P/spillway/spillway:0.1.0."
  type        = string
}

variable "server_url" {
  description = "URL the workers reach the Spillway server at."
  type        = string

  validation {
    condition     = can(regex("^https?://", var.server_url))
    error_message = "server_url must be an http:// or https:// URL."
  }
}

variable "worker_token_secret" {
  description = "Secret Manager secret (projects/P/secrets/NAME) holding a Spillway token of the worker role; the workers read its latest version at boot. Its value is never in Terraform state."
  type        = string

  validation {
    condition     = can(regex("^projects/[^/]+/secrets/[^/]+$", var.worker_token_secret))
    error_message = "worker_token_secret must look like projects/PROJECT/secrets/NAME."
  }
}

variable "queues" {
  description = "Queues the workers serve."
  type        = list(string)
  default     = ["default"]
}

variable "concurrency" {
  description = "Tasks each worker VM runs at once."
  type        = number
  default     = 2
}

variable "min_per_region" {
  description = "Fewest workers per region (the pool's min); the group starts at this size."
  type        = number
  default     = 0
}

variable "max_per_region" {
  description = "Most workers per region (the pool's max)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_per_region >= 1
    error_message = "max_per_region must be at least 1."
  }
}

variable "grace_seconds" {
  description = "Seconds running tasks get to finish after SIGTERM before the worker hands them back as preempted. Keep it below ~25: a Spot VM is stopped ~30 s after the preemption notice."
  type        = number
  default     = 20

  validation {
    condition     = var.grace_seconds >= 0 && var.grace_seconds <= 25
    error_message = "grace_seconds must be between 0 and 25, so the hand-back ends within the ~30 s a preempted VM gets."
  }
}

variable "network" {
  description = "VPC network of the workers (an auto-mode network has a subnetwork in every region)."
  type        = string
  default     = "default"
}

variable "external_ip" {
  description = "Give workers an ephemeral external IP (set false where Cloud NAT or Private Google Access gives them a way out)."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Name of the staging bucket for job inputs and results (the server's storage.blobs = gs://<bucket_name>/spillway)."
  type        = string
}

variable "bucket_location" {
  description = "Location of the staging bucket (a region, dual-region or multi-region such as EU)."
  type        = string
}

variable "staging_retention_days" {
  description = "Delete staged objects older than this many days (0 keeps them; Spillway also deletes inputs of succeeded jobs itself)."
  type        = number
  default     = 30
}

variable "image_repository" {
  description = "Artifact Registry repository holding the image (projects/P/locations/L/repositories/R), to give the worker service account read access; null when the image is public."
  type        = string
  default     = null
}

variable "pubsub_topic" {
  description = "Pub/Sub topic (projects/P/topics/T) that submitters publish work to for `spillway bridge pubsub`; null for none."
  type        = string
  default     = null
}

variable "pubsub_subscription" {
  description = "Pub/Sub subscription (projects/P/subscriptions/S) that the server's `spillway bridge pubsub` pulls; null for none."
  type        = string
  default     = null
}

variable "server_workload_identity" {
  description = "Where the server runs on GKE with Workload Identity: \"NAMESPACE/KUBERNETES_SERVICE_ACCOUNT\" (the Helm chart's is <release>-spillway) to act as the server service account; null otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.server_workload_identity == null || can(regex("^[a-z0-9-]+/[a-z0-9-]+$", var.server_workload_identity))
    error_message = "server_workload_identity must look like NAMESPACE/SERVICE_ACCOUNT."
  }
}

variable "tasks_use_bucket" {
  description = "Give the worker service account roles/storage.objectUser on the staging bucket, for tasks that read or write it themselves. Spillway's own staging goes through the server and never needs it."
  type        = bool
  default     = false
}
