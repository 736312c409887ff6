# New visit-event files are announced on a queue, so incremental checkpoint runs read only
# what is new instead of listing the whole prefix (the hourly run still lists, as a net).
resource "aws_sqs_queue" "visit_events_created" {
  name                       = "ons-visit-events-created"
  message_retention_seconds  = 1209600 # 14 days: the longest SQS keeps a message
  visibility_timeout_seconds = 900     # a run deletes messages only after it has committed
  sqs_managed_sse_enabled    = true
}

data "aws_iam_policy_document" "visit_events_created" {
  statement {
    sid       = "S3ObjectCreated"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.visit_events_created.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this["events"].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "visit_events_created" {
  queue_url = aws_sqs_queue.visit_events_created.id
  policy    = data.aws_iam_policy_document.visit_events_created.json
}

resource "aws_s3_bucket_notification" "visit_events" {
  bucket = aws_s3_bucket.this["events"].id
  queue {
    queue_arn     = aws_sqs_queue.visit_events_created.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = "logs/"
  }
  depends_on = [aws_sqs_queue_policy.visit_events_created]
}

# New processed energy objects (`dataset=` prefixes) are announced on a queue, so the energy
# sensor finds late and out-of-order keys in O(new); its hourly listing is the net.
resource "aws_sqs_queue" "energy_objects_created" {
  name                       = "ons-energy-objects-created"
  message_retention_seconds  = 1209600 # 14 days: the longest SQS keeps a message
  visibility_timeout_seconds = 300     # the sensor deletes a message once its partition exists
  sqs_managed_sse_enabled    = true
}

data "aws_iam_policy_document" "energy_objects_created" {
  statement {
    sid       = "S3ObjectCreated"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.energy_objects_created.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this["processed"].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "energy_objects_created" {
  queue_url = aws_sqs_queue.energy_objects_created.id
  policy    = data.aws_iam_policy_document.energy_objects_created.json
}

resource "aws_s3_bucket_notification" "processed_energy" {
  bucket = aws_s3_bucket.this["processed"].id
  queue {
    queue_arn     = aws_sqs_queue.energy_objects_created.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = "dataset="
  }
  depends_on = [aws_sqs_queue_policy.energy_objects_created]
}
