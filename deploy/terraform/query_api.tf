# The energy query API (seed 003 "API Gateway Integration"): POST /query on an HTTP API,
# served by the run-worker image with the query handler as its command. Read-only: it reads
# the InfluxDB token and the processed Parquet (the S3 fallback), and puts its circuit
# breaker's state in the ONS/ metric namespaces.

variable "query_api_function_name" {
  description = "Lambda function serving POST /query."
  type        = string
  default     = "ons-energy-query-api"
}

resource "aws_cloudwatch_log_group" "query_api" {
  name              = "/aws/lambda/${var.query_api_function_name}"
  retention_in_days = 90
}

resource "aws_iam_role" "query_api" {
  name               = "${var.query_api_function_name}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy_attachment" "query_api_vpc" {
  role       = aws_iam_role.query_api.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

data "aws_iam_policy_document" "query_api" {
  # Its circuit breaker's state goes to the ONS/ metric namespaces.
  source_policy_documents = [data.aws_iam_policy_document.project_metrics.json]
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.query_api.arn}:*"]
  }
  statement {
    sid       = "ReadProcessed"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this["processed"].arn}/dataset=*"]
  }
  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["processed"].arn]
  }
  statement {
    sid       = "InfluxToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.influxdb_token.arn]
  }
}

resource "aws_iam_role_policy" "query_api" {
  name   = "${var.query_api_function_name}-read-only"
  role   = aws_iam_role.query_api.id
  policy = data.aws_iam_policy_document.query_api.json
}

resource "aws_lambda_function" "query_api" {
  function_name = var.query_api_function_name
  description   = "Energy query API: question or template -> InfluxDB (S3 Parquet fallback)"
  role          = aws_iam_role.query_api.arn
  package_type  = "Image"
  image_uri     = var.run_worker_image_uri
  timeout       = 29 # API Gateway's integration limit
  memory_size   = 1024
  architectures = ["x86_64"]

  image_config {
    command = ["ons_pipeline.energy.api.lambda_handler"]
  }

  vpc_config {
    subnet_ids         = var.run_worker_subnet_ids
    security_group_ids = var.run_worker_security_group_ids
  }

  environment {
    variables = {
      ONS_PROCESSED_BUCKET       = aws_s3_bucket.this["processed"].bucket
      INFLUXDB_URL               = "https://${aws_timestreaminfluxdb_db_instance.energy.endpoint}:8086"
      INFLUXDB_ORG               = var.influxdb_org
      INFLUXDB_TOKEN_SECRET_NAME = aws_secretsmanager_secret.influxdb_token.name
      ONS_ENERGY_SINKS           = var.energy_sinks # the default backend follows the switch
    }
  }

  depends_on = [aws_cloudwatch_log_group.query_api, aws_iam_role_policy.query_api]
}

resource "aws_apigatewayv2_api" "query" {
  name          = "ons-energy-query"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "query" {
  api_id                 = aws_apigatewayv2_api.query.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.query_api.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "query" {
  api_id             = aws_apigatewayv2_api.query.id
  route_key          = "POST /query"
  target             = "integrations/${aws_apigatewayv2_integration.query.id}"
  authorization_type = "AWS_IAM"
}

resource "aws_apigatewayv2_stage" "query" {
  api_id      = aws_apigatewayv2_api.query.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = 50
    throttling_rate_limit  = 20
  }
}

resource "aws_lambda_permission" "query_api" {
  statement_id  = "AllowApiGatewayInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.query_api.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.query.execution_arn}/*/*/query"
}

output "query_api_url" {
  description = "POST {\"question\": ...} to this URL + /query (SigV4, IAM auth)."
  value       = aws_apigatewayv2_api.query.api_endpoint
}
