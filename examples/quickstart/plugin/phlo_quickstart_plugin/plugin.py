"""Entry-point objects: a static-partitioned reference asset, a check on it, and the resource it reads."""

from __future__ import annotations

from phlo_dagster.capabilities import (
    AssetCheckSpec,
    AssetSpec,
    MaterializeResult,
    PartitionSpec,
    ResourceSpec,
    RunSpec,
    RuntimeContext,
)

REGIONS = {"eu": "Europe", "us": "United States", "apac": "Asia Pacific"}


def publish_region(context: RuntimeContext) -> MaterializeResult:
    """Look the partition's region up in the catalog resource and report it."""
    catalog = context.get_resource("region_catalog")
    region = context.partition_key or ""
    return MaterializeResult(metadata={"region": region, "name": catalog[region]})


def regions_named(context: RuntimeContext) -> bool:
    """Every region in the catalog has a non-empty name."""
    return all(REGIONS.values())


class AssetsPlugin:
    """Assets and checks this plugin contributes (phlo.plugins.assets)."""

    def get_assets(self) -> list[AssetSpec]:
        return [
            AssetSpec(
                key="ref.regions",
                group="reference",
                description="Sales regions, one static partition each.",
                kinds={"python"},
                partitions=PartitionSpec(kind="static", values=tuple(REGIONS)),
                resources={"region_catalog"},
                run=RunSpec(fn=publish_region),
            )
        ]

    def get_checks(self) -> list[AssetCheckSpec]:
        return [
            AssetCheckSpec(
                name="regions_named",
                asset_key="ref.regions",
                fn=regions_named,
                severity="ERROR",
                description="Every region has a display name.",
            )
        ]


class ResourcesPlugin:
    """Resources this plugin contributes (phlo.plugins.resources)."""

    def get_resources(self) -> list[ResourceSpec]:
        return [ResourceSpec(name="region_catalog", resource=dict(REGIONS))]
