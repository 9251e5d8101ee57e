"""Schemas, routing thresholds and the deterministic stratified split."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.labeling import split
from services.labeling.routing import priority, route, rule_suggestion
from services.labeling.schema import LabelError, ProjectSpec, parse_spec, validate_label

pytestmark = pytest.mark.unit

YAML = """
name: tickets
task: classification
labels: [billing, shipping, account]
datasets: [support-tickets]
overlap: 2
auto_threshold: 0.9
rules:
  - {label: billing, keywords: [refund, invoice], confidence: 0.95}
  - {label: shipping, regex: "order #?\\\\d+ .*(arrived|delivered)", confidence: 0.8}
"""


def spec() -> ProjectSpec:
    return parse_spec(YAML)


def test_project_from_yaml_and_bad_specs() -> None:
    project = spec()
    assert project.overlap == 2
    assert project.rules[1].regex
    with pytest.raises(ValueError, match="needs labels"):
        ProjectSpec(name="x", task="classification")
    with pytest.raises(ValueError, match="not one of"):
        ProjectSpec(name="x", task="ranking", labels=["a"])
    with pytest.raises(ValueError, match="unknown labels"):
        ProjectSpec(name="x", task="classification", labels=["a"], rules=[{"label": "b"}])
    with pytest.raises(ValueError, match="name"):
        ProjectSpec(name="Bad Name", task="response")


def test_labels_outside_the_schema_name_the_allowed_ones() -> None:
    with pytest.raises(LabelError) as caught:
        validate_label(spec(), "refunds")
    assert caught.value.allowed == ["billing", "shipping", "account"]
    assert "billing" in str(caught.value)
    multi = ProjectSpec(name="m", task="multilabel", labels=["a", "b"])
    assert validate_label(multi, ["b", "a", "b"]) == ["a", "b"]
    with pytest.raises(LabelError):
        validate_label(multi, [])
    rating = ProjectSpec(name="r", task="rating")
    assert validate_label(rating, 4) == 4
    with pytest.raises(LabelError) as caught:
        validate_label(rating, 6)
    assert caught.value.allowed == [1, 2, 3, 4, 5]
    spans = ProjectSpec(name="s", task="spans", labels=["ORG"])
    text = "Acme ships"
    assert validate_label(spans, [{"start": 0, "end": 4, "label": "ORG"}], text)[0]["end"] == 4
    with pytest.raises(LabelError):
        validate_label(spans, [{"start": 5, "end": 40, "label": "ORG"}], text)
    pref = ProjectSpec(name="p", task="preference")
    assert pref.labels == ["a", "b"]
    assert validate_label(pref, "b") == "b"


def test_rules_suggest_and_route_by_threshold() -> None:
    project = spec()
    billing = rule_suggestion(project, "Please REFUND me")
    assert billing is not None
    assert billing.label == "billing"
    assert billing.confidence == 0.95
    assert route(project, billing) == "auto"
    shipping = rule_suggestion(project, "order #123 never arrived")
    assert shipping is not None
    assert shipping.label == "shipping"
    assert route(project, shipping) == "human"  # 0.8 < 0.9
    both = rule_suggestion(project, "refund for order 12 not delivered")
    assert both is not None
    assert both.confidence == pytest.approx(0.95 / 2)
    assert route(project, both) == "human"
    assert rule_suggestion(project, "hello there") is None
    assert route(project, None) == "human"
    # uncertainty sampling: the least confident first, unknown (no suggestion) first of all
    assert priority(None) < priority(both) < priority(shipping) < priority(billing)
    exact = project.model_copy(update={"auto_threshold": 0.95})
    assert route(exact, billing) == "auto"  # at the threshold counts as above


def test_split_is_deterministic_and_stratified() -> None:
    items = [(f"r{i}", "a") for i in range(100)] + [(f"s{i}", "b") for i in range(20)]
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    first = split.assign(items, fractions, "seed")
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert split.assign(shuffled, fractions, "seed") == first  # order does not matter
    by = Counter((rid[0], s) for rid, s in first.items())
    assert by[("r", "train")] == 80
    assert by[("r", "validation")] == 10
    assert by[("r", "test")] == 10
    assert by[("s", "train")] == 16
    assert by[("s", "validation")] == 2
    assert by[("s", "test")] == 2
    assert split.assign(items, fractions, "other") != first  # the seed matters
    grown = split.assign([*items, ("r100", "a")], fractions, "seed")
    moved = sum(grown[rid] != first[rid] for rid in first)
    assert moved <= 2  # adding a record moves at most a boundary record
    tiny = split.assign([("x", "c"), ("y", "c"), ("z", "c")], fractions, "seed")
    assert sorted(tiny.values()) == ["train", "train", "train"]
