resource "aws_cloudwatch_log_group" "run_worker" {
  name              = "/aws/lambda/${var.run_worker_function_name}"
  retention_in_days = 90
}

resource "aws_lambda_function" "run_worker" {
  function_name = var.run_worker_function_name
  description   = "Dagster run worker: dagster api execute_run for runs the LambdaRunLauncher sends"
  role          = aws_iam_role.run_worker.arn
  package_type  = "Image"
  image_uri     = var.run_worker_image_uri
  timeout       = var.run_worker_timeout_seconds
  memory_size   = var.run_worker_memory_mb
  architectures = ["x86_64"]

  ephemeral_storage {
    size = 2048
  }

  vpc_config {
    subnet_ids         = var.run_worker_subnet_ids
    security_group_ids = var.run_worker_security_group_ids
  }

  environment {
    variables = {
      DAGSTER_PG_HOST             = var.dagster_pg_host
      DAGSTER_PG_DB               = var.dagster_pg_db
      DAGSTER_PG_USERNAME         = var.dagster_pg_username
      ONS_SECRET_ENV              = jsonencode({ DAGSTER_PG_PASSWORD = var.dagster_pg_password_secret_arn })
      ONS_INGESTION_BUCKET        = aws_s3_bucket.this["ingestion"].bucket
      ONS_PROCESSED_BUCKET        = aws_s3_bucket.this["processed"].bucket
      ONS_EVENTS_BUCKET           = aws_s3_bucket.this["events"].bucket
      ONS_EVENTS_QUEUE_URL        = aws_sqs_queue.arrivals["visits"].url
      ONS_CHECKPOINT_BUCKET       = aws_s3_bucket.this["checkpoints"].bucket
      ONS_LAUNCHER_PAYLOAD_BUCKET = aws_s3_bucket.this["launcher_payload"].bucket
      ONS_COMPUTE_LOG_BUCKET      = aws_s3_bucket.this["processed"].bucket
      ONS_SSM_PREFIX              = var.ssm_prefix
      ONS_ALERT_TOPIC_ARN         = aws_sns_topic.alerts.arn
      TIMESTREAM_DATABASE         = aws_timestreamwrite_database.energy.database_name
      INFLUXDB_URL                = "https://${aws_timestreaminfluxdb_db_instance.energy.endpoint}:8086"
      INFLUXDB_ORG                = var.influxdb_org
      INFLUXDB_TOKEN_SECRET_NAME  = aws_secretsmanager_secret.influxdb_token.name
      ONS_ENERGY_SINKS            = var.energy_sinks
      ONS_MIGRATION_EXPORT        = "unload"
      ONS_MIGRATION_EXPORT_PREFIX = var.migration_export_prefix
    }
  }

  depends_on = [aws_cloudwatch_log_group.run_worker, aws_iam_role_policy.run_worker]
}

# No retries of a failed asynchronous invocation: a second worker would find its run already
# started, and Dagster's own run retries (dagster/max_retries) re-launch failed runs properly.
resource "aws_lambda_function_event_invoke_config" "run_worker" {
  function_name                = aws_lambda_function.run_worker.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 3600
}
