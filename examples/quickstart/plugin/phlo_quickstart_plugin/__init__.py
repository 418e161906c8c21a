"""Quickstart plugin distribution for phlo-dagster."""
