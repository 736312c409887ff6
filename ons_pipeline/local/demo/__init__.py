"""The quickstart's demo: data generators for each group and the one driver that runs them.

Laptop-only: nothing in the groups or the Lambda image imports this package.
"""

from __future__ import annotations
