"""The warehouse resource: a DuckDB file under PHLO_DATA_DIR, shared with the dbt project's profile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from phlo_dagster.capabilities import ResourceSpec, register_resource

# The system temp dir by default: writable under a read-only root filesystem too, and the same default as
# dbt/profiles.yml. dbt runs in its own directory, so the path is made absolute and pinned for every process.
DATA_DIR = Path(os.environ.setdefault("PHLO_DATA_DIR", str(Path(tempfile.gettempdir()).resolve())))
DATA_DIR.mkdir(parents=True, exist_ok=True)  # dbt-duckdb opens the file at compile time


class DuckDBWarehouse:
    """Opens short-lived connections, so dbt can use the same file between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> Any:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(self.path))


register_resource(ResourceSpec(name="warehouse", resource=DuckDBWarehouse(DATA_DIR / "quickstart.duckdb")))
