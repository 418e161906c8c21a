"""Reconcile one PhloWorkflow: reconciler.py composes a pass from the typed steps in steps.py."""

from phlo_operator.reconcile.reconciler import Reconciler, Result, now_rfc3339
from phlo_operator.reconcile.steps import RUN_NAMESPACE_OBJECTS, delete_run_objects

__all__ = ["RUN_NAMESPACE_OBJECTS", "Reconciler", "Result", "delete_run_objects", "now_rfc3339"]
