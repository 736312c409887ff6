# New objects are announced on a queue per arrival prefix, so the visits checkpoint and the
# energy sensor read only what is new (in any key order) instead of listing the whole prefix;
# their hourly listing is the net for a lost message.
locals {
  arrival_queues = {
    visits = {
      name   = "ons-visit-events-created"
      bucket = "events"
      prefix = "logs/"
      # A run deletes its messages only after it has committed: a Lambda's maximum runtime.
      visibility_timeout_seconds = 900
    }
    energy = {
      name   = "ons-energy-objects-created"
      bucket = "processed"
      prefix = "dataset="
      # The sensor deletes a message once its partition exists.
      visibility_timeout_seconds = 300
    }
  }
}

resource "aws_sqs_queue" "arrivals" {
  for_each                   = local.arrival_queues
  name                       = each.value.name
  message_retention_seconds  = 1209600 # 14 days: the longest SQS keeps a message
  visibility_timeout_seconds = each.value.visibility_timeout_seconds
  sqs_managed_sse_enabled    = true
}

data "aws_iam_policy_document" "arrivals" {
  for_each = local.arrival_queues
  statement {
    sid       = "S3ObjectCreated"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.arrivals[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this[each.value.bucket].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "arrivals" {
  for_each  = local.arrival_queues
  queue_url = aws_sqs_queue.arrivals[each.key].id
  policy    = data.aws_iam_policy_document.arrivals[each.key].json
}

# One notification configuration per bucket (S3 allows one); the two queues watch two buckets.
resource "aws_s3_bucket_notification" "arrivals" {
  for_each = local.arrival_queues
  bucket   = aws_s3_bucket.this[each.value.bucket].id
  queue {
    queue_arn     = aws_sqs_queue.arrivals[each.key].arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = each.value.prefix
  }
  depends_on = [aws_sqs_queue_policy.arrivals]
}
