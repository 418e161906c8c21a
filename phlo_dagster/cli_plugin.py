"""``phlo.plugins.cli`` entry point target: the path Phlo core's help knows for phlo-dagster's commands.

Phlo's root help describes plugin commands by entry-point target without importing them; this module keeps the
target the original phlo-dagster used, so ``phlo --help`` lists dev, materialize, backfill and status.
"""

from phlo_dagster.phlo_plugin import DagsterCliPlugin

__all__ = ["DagsterCliPlugin"]
