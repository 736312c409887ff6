locals {
  sales_source_tables = [
    "sales_order", "staff", "department", "address", "currency", "design", "counterparty",
  ]
  sales_star_tables = [
    "fact_sales_order", "dim_date", "dim_staff", "dim_location", "dim_currency", "dim_design",
    "dim_counterparty",
  ]
  counter_parameters = merge(
    { for t in local.sales_source_tables : "${var.ssm_prefix}/sales/last_packet/${t}" => "0" },
    { for t in local.sales_star_tables : "${var.ssm_prefix}/sales/output_sequence/${t}" => "0" },
  )
}

# Counters the pipelines advance: created at 0, then owned by the pipelines.
resource "aws_ssm_parameter" "counters" {
  for_each = local.counter_parameters
  name     = each.key
  type     = "String"
  value    = each.value
  lifecycle {
    ignore_changes = [value]
  }
}

# Where each setting the code reads lives, for operators and the webserver's environment.
resource "aws_ssm_parameter" "config" {
  for_each = {
    "${var.ssm_prefix}/config/ingestion_bucket"  = aws_s3_bucket.this["ingestion"].bucket
    "${var.ssm_prefix}/config/processed_bucket"  = aws_s3_bucket.this["processed"].bucket
    "${var.ssm_prefix}/config/events_bucket"     = aws_s3_bucket.this["events"].bucket
    "${var.ssm_prefix}/config/checkpoint_bucket" = aws_s3_bucket.this["checkpoints"].bucket
    "${var.ssm_prefix}/config/payload_bucket"    = aws_s3_bucket.this["launcher_payload"].bucket
    "${var.ssm_prefix}/config/alert_topic_arn"   = aws_sns_topic.alerts.arn
    "${var.ssm_prefix}/config/timestream_db"     = aws_timestreamwrite_database.energy.database_name
    "${var.ssm_prefix}/config/run_worker_lambda" = aws_lambda_function.run_worker.function_name
    "${var.ssm_prefix}/config/influxdb_url"      = "https://${aws_timestreaminfluxdb_db_instance.energy.endpoint}:8086"
  }
  name  = each.key
  type  = "String"
  value = each.value
}
