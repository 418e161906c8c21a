"""This package as Phlo core sees it: plugin classes built on ``phlo.plugins.base``.

Only Phlo core's discovery loads this module (through our ``phlo.plugins.*`` entry points), so it may import
phlo; the rest of phlo_dagster never imports it, and works without phlo installed. Each class wraps the plain
implementation (services.py, translate.py, cli.py) and adds the base class and metadata Phlo validates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from phlo.plugins.base import OrchestratorAdapterPlugin, ServicePlugin
from phlo.plugins.base import PluginMetadata as PhloPluginMetadata
from phlo.plugins.base.cli import CliCommandPlugin

from phlo_dagster import services
from phlo_dagster.translate import DagsterAdapter

__all__ = [
    "DagsterCliPlugin",
    "DagsterDaemonServicePlugin",
    "DagsterOrchestratorAdapter",
    "DagsterServicePlugin",
]

_AUTHOR = "phlo-dagster"


def _metadata(plain: services.PluginMetadata, tags: list[str]) -> PhloPluginMetadata:
    return PhloPluginMetadata(
        name=plain.name, version=plain.version, description=plain.description, author=_AUTHOR, tags=tags
    )


class DagsterOrchestratorAdapter(OrchestratorAdapterPlugin):  # type: ignore[misc]
    """``phlo.orchestrators.get_active_orchestrator()``: Phlo's specs in, ``dagster.Definitions`` out."""

    def __init__(self) -> None:
        self._adapter = DagsterAdapter()

    @property
    def metadata(self) -> PhloPluginMetadata:
        return PhloPluginMetadata(
            name="dagster",
            version=services._version(),
            description="Dagster orchestrator adapter for Phlo capability specs (phlo-dagster runtime)",
            author=_AUTHOR,
            tags=["orchestrator", "dagster"],
        )

    def exec_service_name(self) -> str | None:
        return services.WEBSERVER_SERVICE

    def build_definitions(
        self,
        *,
        assets: Iterable[Any],
        checks: Iterable[Any] = (),
        resources: Iterable[Any] = (),
    ) -> Any:
        return self._adapter.build_definitions(assets=assets, checks=checks, resources=resources)


class _Service(ServicePlugin):  # type: ignore[misc]
    _plain: Any

    @property
    def metadata(self) -> PhloPluginMetadata:
        return _metadata(self._plain.metadata, ["orchestration", "dagster"])

    @property
    def service_definition(self) -> dict[str, Any]:
        data: dict[str, Any] = self._plain.service_definition
        # Phlo's service catalogue reads these keys; ours (command, health_check, ...) run `phlo services`.
        data.setdefault("category", "orchestration")
        data.setdefault("default", True)
        data.setdefault("version", self._plain.metadata.version)
        return data


class DagsterServicePlugin(_Service):
    """The Dagster webserver (UI, /graphql, /metrics)."""

    def __init__(self) -> None:
        self._plain = services.DagsterServicePlugin()


class DagsterDaemonServicePlugin(_Service):
    """The Dagster daemon (run queue, schedules, sensors)."""

    def __init__(self) -> None:
        self._plain = services.DagsterDaemonServicePlugin()

    @property
    def service_definition(self) -> dict[str, Any]:
        data = super().service_definition
        data.setdefault("depends_on", [services.WEBSERVER_SERVICE])
        return data


class DagsterCliPlugin(CliCommandPlugin):  # type: ignore[misc]
    """This package's commands for Phlo's ``phlo``: dev, materialize, webserver, dbt, backfill, status, logs.

    Phlo core keeps its own commands on a name clash (its ``services``, ``plugin`` and ``logs`` win).
    """

    @property
    def metadata(self) -> PhloPluginMetadata:
        return PhloPluginMetadata(
            name="dagster",
            version=services._version(),
            description="Dagster commands (dev, materialize, webserver, dbt, backfill, status, logs)",
            author=_AUTHOR,
            tags=["cli", "dagster"],
        )

    def get_cli_commands(self) -> list[Any]:
        from phlo_dagster.cli import phlo_commands

        return phlo_commands()
