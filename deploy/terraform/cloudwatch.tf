# Alarms from the seeds (error count, duration over 10 minutes, throttling, failed batches),
# all notifying the administrators' topic.

locals {
  alarm_actions = [aws_sns_topic.alerts.arn]
  # namespace/metric => statistic, threshold, description
  custom_alarms = {
    timestream-processing-errors = {
      namespace = "ONS/Timestream", metric = "ProcessingErrors", statistic = "Sum",
      threshold = 0, description = "Timestream loader reported processing errors"
    }
    influxdb-processing-errors = {
      namespace = "ONS/InfluxDB", metric = "ProcessingErrors", statistic = "Sum",
      threshold = 0, description = "InfluxDB loader reported processing errors"
    }
    influxdb-failed-batches = {
      namespace = "ONS/InfluxDB", metric = "FailedBatches", statistic = "Sum",
      threshold = 0, description = "InfluxDB batch writes failed"
    }
    pipeline-run-failed = {
      namespace = "ONS/Pipeline", metric = "RunFailed", statistic = "Sum",
      threshold = 0, description = "A Dagster run failed after its retries"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "custom" {
  for_each            = local.custom_alarms
  alarm_name          = "ons-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "run_worker_errors" {
  alarm_name          = "ons-run-worker-errors"
  alarm_description   = "The run-worker Lambda failed (handler error or timeout)"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.run_worker.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "run_worker_duration" {
  alarm_name          = "ons-run-worker-duration-over-10-minutes"
  alarm_description   = "A run took over 10 minutes in Lambda (15 is the hard limit): route it long_running"
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = aws_lambda_function.run_worker.function_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 600000 # milliseconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "run_worker_throttles" {
  alarm_name          = "ons-run-worker-throttles"
  alarm_description   = "Lambda throttled run-worker invocations"
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.run_worker.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "timestream_throttles" {
  for_each            = aws_timestreamwrite_table.energy
  alarm_name          = "ons-timestream-${each.key}-throttled"
  alarm_description   = "Timestream rejected writes to ${each.key} (throttling or user errors)"
  namespace           = "AWS/Timestream"
  metric_name         = "UserErrors"
  dimensions          = { Operation = "WriteRecords", DatabaseName = aws_timestreamwrite_database.energy.database_name, TableName = each.value.table_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}
