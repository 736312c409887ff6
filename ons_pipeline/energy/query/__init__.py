"""The energy read side (seed 003 query layer): templates, translator, breaker, S3 fallback.

Pure logic, no Dagster: the API server, the Lambda handler and the tests share it.
"""

from __future__ import annotations
