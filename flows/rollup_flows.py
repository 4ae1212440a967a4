"""rollup's Prefect flows, for Prefect's own tools (`flows/rollup_flows.py:cascade_flow`).

The flows live in the library, `rollup.deploy.flows`; `rollup serve` serves them from there.
"""

from rollup.deploy.flows import (
    cascade_flow,
    level_flow,
    maintenance_flow,
    quality_flow,
    retention_flow,
)

__all__ = ["cascade_flow", "level_flow", "maintenance_flow", "quality_flow", "retention_flow"]
