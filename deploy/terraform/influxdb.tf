resource "random_password" "influxdb_admin" {
  length  = 32
  special = false
}

resource "aws_timestreaminfluxdb_db_instance" "energy" {
  name                   = "ons-energy"
  db_instance_type       = "db.influx.medium"
  allocated_storage      = 50
  db_storage_type        = "InfluxIOIncludedT1"
  deployment_type        = "SINGLE_AZ"
  publicly_accessible    = false
  username               = "ons-admin"
  password               = random_password.influxdb_admin.result
  organization           = var.influxdb_org
  bucket                 = "generation_data"
  vpc_subnet_ids         = var.influxdb_subnet_ids
  vpc_security_group_ids = var.influxdb_security_group_ids
}

# The API token the pipelines use (INFLUXDB_TOKEN_SECRET_NAME): read and write on the three
# energy buckets only, never an all-access token. Once the instance is up, create and store it
# with deploy/influxdb_scoped_token.py (see deploy/README.md). The admin password above is in
# no output, but Terraform state holds it (random_password): keep the state encrypted and
# access to it restricted.
resource "aws_secretsmanager_secret" "influxdb_token" {
  name        = var.influxdb_token_secret_name
  description = "InfluxDB API token for org ${var.influxdb_org} on ${aws_timestreaminfluxdb_db_instance.energy.name}"
}
