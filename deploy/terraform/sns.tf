# Not encrypted with the AWS-managed SNS key: CloudWatch alarms cannot publish to a topic
# under that key (it would need a customer key granting cloudwatch.amazonaws.com).
resource "aws_sns_topic" "alerts" {
  name = var.alert_topic_name
}

resource "aws_sns_topic_subscription" "admin_email" {
  for_each  = toset(var.admin_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}
