# Alarms from the seeds (error count, duration over 10 minutes, throttling, failed batches,
# visits' failed-event rate), all notifying the administrators' topic, and one dashboard.
#
# A CloudWatch alarm watches exactly one series: namespace, metric name and the full set of
# dimensions. The code publishes RunFailed and ProcessingErrors twice, per Job / ErrorType for
# drill-down and once without dimensions as the total these alarms watch.
# ons_pipeline_tests/integration/test_alarm_contract.py checks every alarm and dashboard
# metric here against the series the code puts during the integration runs.

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

# Seed 004: EventsFailed over 10% of the events processed in the same period.
resource "aws_cloudwatch_metric_alarm" "visits_events_failed_rate" {
  alarm_name          = "ons-visits-events-failed-over-10-percent"
  alarm_description   = "Visits checkpoint: EventsFailed over 10% of the events processed"
  evaluation_periods  = 1
  threshold           = 10
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions

  metric_query {
    id          = "failed_percent"
    label       = "EventsFailed as % of events processed"
    return_data = true
    # No processed events but failures: 100%; neither: 0%.
    expression = "IF(processed > 0, 100 * failed / processed, 100 * (failed > 0))"
  }

  metric_query {
    id = "failed"
    metric {
      namespace   = "ONS/Visits"
      metric_name = "EventsFailed"
      stat        = "Sum"
      period      = 3600
    }
  }

  metric_query {
    id = "processed"
    metric {
      namespace   = "ONS/Visits"
      metric_name = "NewEventsProcessed"
      stat        = "Sum"
      period      = 3600
    }
  }
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

# Seed 003 "Custom Dashboards": one widget per asset group and one for the run launcher.
locals {
  dashboard_widgets = {
    sales = {
      title = "Sales: ToteSys packets to the star schema"
      metrics = [
        ["ONS/Sales", "RowsProcessed", "Table", "fact_sales_order"],
        ["ONS/Sales", "RowsQuarantined", "Stage", "star"],
        ["ONS/Sales", "StarSchemaDuration"],
      ]
    }
    energy = {
      title = "Energy: InfluxDB and Timestream loads"
      metrics = [
        ["ONS/InfluxDB", "PointsWritten"],
        ["ONS/InfluxDB", "FailedBatches"],
        ["ONS/InfluxDB", "ProcessingErrors"],
        ["ONS/Timestream", "RecordsProcessed"],
        ["ONS/Timestream", "ProcessingErrors"],
      ]
    }
    visits = {
      title = "Visits: event-log checkpoint"
      metrics = [
        ["ONS/Visits", "NewEventsProcessed"],
        ["ONS/Visits", "EventsFailed"],
        ["ONS/Visits", "TotalEvents"],
      ]
    }
    launcher = {
      title = "Run launcher: Dagster runs on the run-worker Lambda"
      metrics = [
        ["ONS/Pipeline", "RunSucceeded"],
        ["ONS/Pipeline", "RunFailed"],
        ["AWS/Lambda", "Invocations", "FunctionName", var.run_worker_function_name],
        ["AWS/Lambda", "Errors", "FunctionName", var.run_worker_function_name],
        ["AWS/Lambda", "Throttles", "FunctionName", var.run_worker_function_name],
      ]
    }
  }
}

resource "aws_cloudwatch_dashboard" "pipeline" {
  dashboard_name = "ons-pipeline"
  dashboard_body = jsonencode({
    widgets = [
      for index, name in keys(local.dashboard_widgets) : {
        type   = "metric"
        x      = (index % 2) * 12
        y      = floor(index / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = local.dashboard_widgets[name].title
          region  = var.region
          stat    = "Sum"
          period  = 300
          view    = "timeSeries"
          metrics = local.dashboard_widgets[name].metrics
        }
      }
    ]
  })
}
