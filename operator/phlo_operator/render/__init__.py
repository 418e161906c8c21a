"""Pure renderers: a PhloWorkflow (model + a few observed facts) -> plain manifest dicts. No I/O here."""

from phlo_operator.render.bundle import Desired, Facts, Workflow, render_all

__all__ = ["Desired", "Facts", "Workflow", "render_all"]
