data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "run_worker" {
  name               = "${var.run_worker_function_name}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# Network interfaces in the VPC (to reach Postgres and InfluxDB).
resource "aws_iam_role_policy_attachment" "run_worker_vpc" {
  role       = aws_iam_role.run_worker.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  ssm_arn   = "arn:${local.partition}:ssm:${var.region}:${local.account}:parameter${var.ssm_prefix}/*"
}

# Metrics in the project's namespaces only: shared by the run worker and the query API.
data "aws_iam_policy_document" "project_metrics" {
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resources; limited to the project's namespaces
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["ONS/*"]
    }
  }
}

# Only what the run worker uses: its log group, the five buckets, the prefix's parameters, the
# alert topic, the energy tables, the two secrets and the metric namespaces.
data "aws_iam_policy_document" "run_worker" {
  source_policy_documents = [data.aws_iam_policy_document.project_metrics.json]
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.run_worker.arn}:*"]
  }
  statement {
    sid     = "ReadWriteData"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.this["ingestion"].arn}/*",
      "${aws_s3_bucket.this["processed"].arn}/*",
      "${aws_s3_bucket.this["events"].arn}/*",
      "${aws_s3_bucket.this["checkpoints"].arn}/*",
    ]
  }
  statement {
    sid     = "ListData"
    actions = ["s3:ListBucket"]
    resources = [
      aws_s3_bucket.this["ingestion"].arn,
      aws_s3_bucket.this["processed"].arn,
      aws_s3_bucket.this["events"].arn,
      aws_s3_bucket.this["checkpoints"].arn,
    ]
  }
  statement {
    sid       = "ReadLaunchPayloads"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this["launcher_payload"].arn}/runs/*"]
  }
  statement {
    sid       = "Parameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:PutParameter"]
    resources = [local.ssm_arn]
  }
  statement {
    sid       = "VisitEventNotifications"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.arrivals["visits"].arn]
  }
  statement {
    sid       = "Alerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
  statement {
    sid     = "TimestreamWrite"
    actions = ["timestream:WriteRecords", "timestream:DescribeTable"]
    resources = [
      for table in aws_timestreamwrite_table.energy : table.arn
    ]
  }
  # The migration reads Timestream history: Query pages (the fallback) and UNLOAD, which
  # needs Select on the table and writes the export as the caller, so the caller also needs
  # s3:PutObject on the export prefix (granted with the processed bucket above) and
  # s3:GetBucketAcl on its bucket.
  statement {
    sid     = "TimestreamMigrationRead"
    actions = ["timestream:Select"]
    resources = [
      for table in aws_timestreamwrite_table.energy : table.arn
    ]
  }
  statement {
    sid       = "MigrationExportBucket"
    actions   = ["s3:GetBucketAcl"]
    resources = [aws_s3_bucket.this["processed"].arn]
  }
  statement {
    sid       = "TimestreamEndpoints"
    actions   = ["timestream:DescribeEndpoints"]
    resources = ["*"] # DescribeEndpoints has no resource-level permissions
  }
  statement {
    sid     = "Secrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      aws_secretsmanager_secret.influxdb_token.arn,
      var.dagster_pg_password_secret_arn,
    ]
  }
}

resource "aws_iam_role_policy" "run_worker" {
  name   = "${var.run_worker_function_name}-least-privilege"
  role   = aws_iam_role.run_worker.id
  policy = data.aws_iam_policy_document.run_worker.json
}

# For the webserver and daemon (attach to their role): invoke the worker, store big payloads.
data "aws_iam_policy_document" "launcher" {
  statement {
    sid       = "InvokeRunWorker"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.run_worker.arn, "${aws_lambda_function.run_worker.arn}:*"]
  }
  statement {
    sid       = "WriteLaunchPayloads"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this["launcher_payload"].arn}/runs/*"]
  }
  # The energy sensor (evaluated for the daemon) reads announcements and lists to reconcile.
  statement {
    sid       = "EnergyObjectNotifications"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
    resources = [aws_sqs_queue.arrivals["energy"].arn]
  }
  statement {
    sid       = "ListProcessedEnergy"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["processed"].arn]
  }
}

resource "aws_iam_policy" "launcher" {
  name   = "ons-dagster-launcher"
  policy = data.aws_iam_policy_document.launcher.json
}
