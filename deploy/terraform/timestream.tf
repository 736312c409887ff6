resource "aws_timestreamwrite_database" "energy" {
  database_name = var.timestream_database
}

resource "aws_timestreamwrite_table" "energy" {
  for_each      = toset(var.timestream_tables)
  database_name = aws_timestreamwrite_database.energy.database_name
  table_name    = each.value

  retention_properties {
    memory_store_retention_period_in_hours  = 24
    magnetic_store_retention_period_in_days = 2555 # seven years, as the InfluxDB buckets
  }

  magnetic_store_write_properties {
    enable_magnetic_store_writes = true # backfills write records older than the memory store
  }
}
