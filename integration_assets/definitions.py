"""The Dagster code location. Thin: gathers each layer's definitions and applies project-wide policy here."""

from __future__ import annotations

import dagster as dg

from integration_assets.assets.files import build_all
from integration_assets.jobs.replay import replay_dead_letters
from integration_assets.resources import warehouse_resource
from integration_assets.sensors.inbox import build_inbox_sensor


def build_definitions() -> dg.Definitions:
    file_assets, file_jobs = build_all()
    return dg.Definitions(
        assets=file_assets,
        jobs=[*file_jobs, replay_dead_letters],
        sensors=[build_inbox_sensor(file_jobs)],
        resources={"warehouse": warehouse_resource()},
    )


defs = build_definitions()
