"""One partition per processed Parquet object (its key), added by the arrival sensor."""

from dagster import DynamicPartitionsDefinition

energy_objects_partitions = DynamicPartitionsDefinition(name="energy_processed_objects")
