"""Entry-point objects; filled in with real specs below."""

from __future__ import annotations

from typing import Any


class AssetsPlugin:
    """Assets and checks this plugin contributes."""

    def get_assets(self) -> list[Any]:
        return []

    def get_checks(self) -> list[Any]:
        return []


class ResourcesPlugin:
    """Resources this plugin contributes."""

    def get_resources(self) -> list[Any]:
        return []
