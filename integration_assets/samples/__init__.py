"""Seeded sample data for the demo, the tests and the benchmarks."""

from integration_assets.samples.batch import generate_batch_samples

__all__ = ["generate_batch_samples"]
