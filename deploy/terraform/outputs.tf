output "run_worker_function" {
  description = "ONS_LAMBDA_FUNCTION for the webserver and daemon."
  value       = aws_lambda_function.run_worker.function_name
}

output "bucket_names" {
  description = "Bucket names by role (ONS_*_BUCKET)."
  value       = { for role, bucket in aws_s3_bucket.this : role => bucket.bucket }
}

output "alert_topic_arn" {
  description = "ONS_ALERT_TOPIC_ARN."
  value       = aws_sns_topic.alerts.arn
}

output "launcher_policy_arn" {
  description = "Attach to the webserver's and daemon's role: invoke the worker, write payloads."
  value       = aws_iam_policy.launcher.arn
}

output "influxdb_endpoint" {
  description = "INFLUXDB_URL host."
  value       = aws_timestreaminfluxdb_db_instance.energy.endpoint
}

output "energy_queue_url" {
  description = "ONS_ENERGY_QUEUE_URL for the daemon: new processed energy objects."
  value       = aws_sqs_queue.arrivals["energy"].url
}
