"""Pure renderers: a PhloWorkflow (model + a few observed facts) -> plain manifest dicts. No I/O here."""

from phlo_operator.render.bundle import Desired, Facts, render_all, shared
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import Workflow

__all__ = ["Desired", "Facts", "Shared", "Workflow", "render_all", "shared"]
