"""Reading a Prometheus exposition the way Prometheus does: prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def parse(text: str) -> dict[str, Metric]:
    """The families of an exposition by name (a counter's name without `_total`)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict[str, Metric], name: str) -> dict[Labels, float]:
    """Every sample called ``name``, by its sorted labels."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in families.values() for s in family.samples if s.name == name}
