# Names default to ons_pipeline/resources/defaults.py, which the code reads when the matching
# environment variable is unset; change both together.

variable "region" {
  description = "AWS region for every resource (defaults.AWS_REGION)."
  type        = string
  default     = "eu-west-2"
}

variable "environment" {
  description = "Environment name, used in tags."
  type        = string
  default     = "production"
}

variable "buckets" {
  description = "Bucket names by role (defaults.*_BUCKET)."
  type        = map(string)
  default = {
    ingestion        = "ons-ingestion"
    processed        = "ons-processed"
    events           = "ons-visit-events"
    checkpoints      = "ons-checkpoints"
    launcher_payload = "ons-launcher-payloads"
  }
}

variable "ssm_prefix" {
  description = "Parameter Store prefix for the pipelines' counters (defaults.SSM_PREFIX)."
  type        = string
  default     = "/ons_pipeline"
}

variable "alert_topic_name" {
  description = "SNS topic administrators subscribe to (defaults.ALERT_TOPIC_NAME)."
  type        = string
  default     = "ons-pipeline-alerts"
}

variable "admin_emails" {
  description = "Administrators' addresses subscribed to the alert topic (each must confirm)."
  type        = list(string)
}

variable "timestream_database" {
  description = "Timestream database (defaults.TIMESTREAM_DATABASE)."
  type        = string
  default     = "ons_energy"
}

variable "timestream_tables" {
  description = "Timestream tables (defaults.TIMESTREAM_TABLES)."
  type        = list(string)
  default     = ["generation", "consumption", "transmission"]
}

variable "influxdb_org" {
  description = "InfluxDB organisation (defaults.INFLUXDB_ORG)."
  type        = string
  default     = "ons-energy"
}

variable "influxdb_token_secret_name" {
  description = "Secrets Manager name of the InfluxDB API token (INFLUXDB_TOKEN_SECRET_NAME)."
  type        = string
  default     = "ons/influxdb/token"
}

variable "influxdb_subnet_ids" {
  description = "Private subnets for the Timestream for InfluxDB instance."
  type        = list(string)
}

variable "influxdb_security_group_ids" {
  description = "Security groups allowing the run worker to reach InfluxDB on 8086."
  type        = list(string)
}

variable "run_worker_image_uri" {
  description = "ECR image URI of deploy/lambda/Dockerfile (repository:tag or @digest)."
  type        = string
}

variable "run_worker_function_name" {
  description = "Run-worker Lambda (defaults.LAMBDA_RUN_WORKER_FUNCTION; ONS_LAMBDA_FUNCTION)."
  type        = string
  default     = "ons-run-worker"
}

variable "run_worker_timeout_seconds" {
  description = "Lambda timeout; 900 is Lambda's maximum (defaults.LAMBDA_TIMEOUT_SECONDS)."
  type        = number
  default     = 900
}

variable "run_worker_memory_mb" {
  description = "Lambda memory (defaults.LAMBDA_MEMORY_MB)."
  type        = number
  default     = 3008
}

variable "run_worker_subnet_ids" {
  description = "Subnets the run worker runs in (it must reach the Dagster Postgres and InfluxDB)."
  type        = list(string)
}

variable "run_worker_security_group_ids" {
  description = "Security groups of the run worker."
  type        = list(string)
}

variable "dagster_pg_host" {
  description = "Hostname of the Dagster instance's Postgres database."
  type        = string
}

variable "dagster_pg_db" {
  description = "Database name of the Dagster instance."
  type        = string
  default     = "dagster"
}

variable "dagster_pg_username" {
  description = "Postgres user of the Dagster instance."
  type        = string
  default     = "dagster"
}

variable "dagster_pg_password_secret_arn" {
  description = "Secrets Manager ARN holding the Dagster Postgres password (never a literal)."
  type        = string
}

variable "payload_retention_days" {
  description = "Days launcher payloads are kept (they are read once, at invocation)."
  type        = number
  default     = 7
}

variable "migration_export_prefix" {
  description = "Prefix in the processed bucket for the migration's UNLOAD exports."
  type        = string
  default     = "exports/timestream"
}

variable "migration_export_retention_days" {
  description = "Days an export a failed migration window left behind is kept."
  type        = number
  default     = 7
}

variable "energy_sinks" {
  description = "ONS_ENERGY_SINKS: timestream,influxdb (blue/green), influxdb (cut over), timestream (rolled back)."
  type        = string
  default     = "timestream,influxdb"
}
