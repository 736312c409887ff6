resource "aws_s3_bucket" "this" {
  for_each = var.buckets
  bucket   = each.value
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = aws_s3_bucket.this
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Refuse plain-HTTP access to every bucket.
data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each   = aws_s3_bucket.this
  bucket     = each.value.id
  policy     = data.aws_iam_policy_document.tls_only[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "launcher_payload" {
  bucket = aws_s3_bucket.this["launcher_payload"].id
  rule {
    id     = "expire-payloads"
    status = "Enabled"
    filter {
      prefix = "runs/"
    }
    expiration {
      days = var.payload_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

# The migration's UNLOAD exports: a window's objects are deleted once it is validated; what a
# failed or interrupted window leaves (kept for inspection) expires here, and so do the parts
# of a multipart upload an UNLOAD abandoned.
resource "aws_s3_bucket_lifecycle_configuration" "migration_exports" {
  bucket = aws_s3_bucket.this["processed"].id
  rule {
    id     = "expire-migration-exports"
    status = "Enabled"
    filter {
      prefix = "${var.migration_export_prefix}/"
    }
    expiration {
      days = var.migration_export_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}
