"""The CRDs in ``crds/``, their examples and the pydantic models that mirror them.

Pure: reads YAML, talks to no cluster. The OpenAPI v3 schemas of the CRDs are turned into
JSON Schema (``nullable`` becomes a ``null`` type, boolean ``exclusiveMinimum`` becomes
numeric, and objects with ``properties`` reject unknown fields, where the API server would
prune them silently) and validated with ``jsonschema``. The API server's defaulting is
simulated (top-down: an object defaulted to ``{}`` gets its children's defaults).
"""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, PlainSerializer, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.quantity import format_bytes, format_duration, format_millicores
from unthrottle.model.status import (
    RFC3339_PATTERN,
    ThrottlePolicyStatus,
    ThrottleRecommendationSpec,
    ThrottleRecommendationStatus,
)

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))

QUANTITY_PATTERN = r"^([+]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"

Schema = dict[str, Any]


def _load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: expected exactly one YAML document, got {len(docs)}"
    doc = docs[0]
    assert isinstance(doc, dict)
    return doc


TP_CRD = _load(CRDS / "throttlepolicy.yaml")
TREC_CRD = _load(CRDS / "throttlerecommendation.yaml")
CRD_BY_KIND = {"ThrottlePolicy": TP_CRD, "ThrottleRecommendation": TREC_CRD}


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1
    version = versions[0]
    assert isinstance(version, dict)
    return version


def _root_schema(crd: dict[str, Any]) -> Schema:
    schema = _version(crd)["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


# --- OpenAPI v3 (Kubernetes flavour) → JSON Schema --------------------------------------


_NOT_JSON_SCHEMA = frozenset(
    {"exclusiveMinimum", "exclusiveMaximum", "nullable", "default", "description"}
)


def to_json_schema(node: Schema) -> Schema:
    """A CRD schema node as JSON Schema (draft 2020-12), strict about unknown fields."""
    out: Schema = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_json_schema(value)
        elif key in _NOT_JSON_SCHEMA or key.startswith("x-kubernetes-"):
            continue  # handled below, or meaningful to the API server only
        else:
            out[key] = copy.deepcopy(value)
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type check reports non-strings
    if "T" not in value:
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time")(_is_date_time)


def schema_errors(instance: object, node: Schema) -> list[str]:
    """Every violation of ``node`` by ``instance``, as ``path: message`` lines."""
    validator = jsonschema.Draft202012Validator(to_json_schema(node), format_checker=FORMATS)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def apply_defaults(value: Any, node: Schema) -> Any:
    """The API server's structural defaulting, top-down, on a copy of ``value``."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and "properties" in node:
        for name, sub in node["properties"].items():
            if name in value and value[name] is None and not sub.get("nullable"):
                del value[name]  # the API server prunes nulls of non-nullable fields
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        value = {k: apply_defaults(v, node["additionalProperties"]) for k, v in value.items()}
    elif isinstance(value, list) and "items" in node:
        value = [apply_defaults(item, node["items"]) for item in value]
    return value


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node under ``node`` with a dotted path (``[]`` for items, ``{}`` for maps)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def all_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield str(key)
            yield from all_keys(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from all_keys(sub)


# --- the CRD objects themselves ---------------------------------------------------------


@pytest.mark.parametrize(
    ("crd", "expected"),
    [
        (
            TP_CRD,
            {
                "name": "throttlepolicies.unthrottle.dev",
                "kind": "ThrottlePolicy",
                "plural": "throttlepolicies",
                "singular": "throttlepolicy",
                "shortNames": ["tp"],
                "scope": "Cluster",
            },
        ),
        (
            TREC_CRD,
            {
                "name": "throttlerecommendations.unthrottle.dev",
                "kind": "ThrottleRecommendation",
                "plural": "throttlerecommendations",
                "singular": "throttlerecommendation",
                "shortNames": ["trec"],
                "scope": "Namespaced",
            },
        ),
    ],
    ids=["tp", "trec"],
)
def test_crd_identity(crd: dict[str, Any], expected: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == expected["name"]
    spec = crd["spec"]
    assert spec["group"] == "unthrottle.dev"
    assert spec["scope"] == expected["scope"]
    names = spec["names"]
    for key in ("kind", "plural", "singular", "shortNames"):
        assert names[key] == expected[key], key
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("crd", "columns"),
    [
        (
            TP_CRD,
            [
                ("MODE", ".spec.mode", "string"),
                ("TIER", ".spec.tier", "string"),
                ("READY", '.status.conditions[?(@.type=="Ready")].status', "string"),
                ("REASON", '.status.conditions[?(@.type=="Ready")].reason', "string"),
                ("WORKLOADS", ".status.counts.workloads", "integer"),
                ("THROTTLED", ".status.counts.throttled", "integer"),
                ("PATCHED", ".status.counts.patched", "integer"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            TREC_CRD,
            [
                ("KIND", ".spec.targetRef.kind", "string"),
                ("TIER", ".status.tier", "string"),
                ("THROTTLE", ".status.summary.throttle", "string"),
                ("CPU REQ", ".status.summary.cpuRequest", "string"),
                ("CPU LIMIT", ".status.summary.cpuLimit", "string"),
                ("BURST", ".status.summary.burst", "string"),
                ("MEMORY", ".status.summary.memory", "string"),
                ("WORKERS", ".status.summary.workers", "string"),
                ("ACTION", ".status.summary.action", "string"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
    ],
    ids=["tp", "trec"],
)
def test_printer_columns(crd: dict[str, Any], columns: list[tuple[str, str, str]]) -> None:
    got = [(c["name"], c["jsonPath"], c["type"]) for c in _version(crd)["additionalPrinterColumns"]]
    assert got == columns
    # Every column but AGE must point at a field the schema has, with a matching type.
    schema = _root_schema(crd)
    for name, json_path, column_type in columns:
        if name == "AGE":
            continue
        node = schema
        # A filter (conditions[?(@.type=="Ready")]) picks an item of the list it follows.
        path = re.sub(r'\[\?\(@\.type=="\w+"\)\]', "[]", json_path)
        for part in path.strip(".").split("."):
            node = node["properties"][part.removesuffix("[]")]
            if part.endswith("[]"):
                assert node["type"] == "array", name
                node = node["items"]
        assert node["type"] == column_type, name


@pytest.mark.parametrize("crd", [TP_CRD, TREC_CRD], ids=["tp", "trec"])
def test_crd_is_structural_and_cel_free(crd: dict[str, Any]) -> None:
    assert "x-kubernetes-validations" not in set(all_keys(crd))
    # The API server forbids anything but name/generateName under metadata (even a description).
    assert _root_schema(crd)["properties"].get("metadata", {"type": "object"}) == {"type": "object"}
    problems: list[str] = []
    for path, node in walk(_root_schema(crd)):
        if path in ("", "metadata") or path.endswith(("[]", "{}")):
            pass
        elif "description" not in node:
            problems.append(f"{path}: no description")
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        if node.get("type") == "object":
            has_shape = (
                "properties" in node
                or isinstance(node.get("additionalProperties"), dict)
                or node.get("x-kubernetes-preserve-unknown-fields") is True
            )
            if not has_shape and path != "metadata":
                problems.append(f"{path}: object without properties")
            if "properties" in node and "additionalProperties" in node:
                problems.append(f"{path}: both properties and additionalProperties")
            missing = set(node.get("required", ())) - set(node.get("properties", {}))
            if missing:
                problems.append(f"{path}: required but not declared: {sorted(missing)}")
        if "default" in node:
            if node.get("nullable"):
                problems.append(f"{path}: default on a nullable field")
            problems += [f"{path} default: {e}" for e in schema_errors(node["default"], node)]
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", ()))
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in required:
                    problems.append(f"{path}: list map key {key} must be required")
    assert problems == []


def test_empty_spec_gets_every_default() -> None:
    spec_schema = _root_schema(TP_CRD)["properties"]["spec"]
    assert spec_schema["default"] == {}
    defaulted = apply_defaults({"spec": None}, _root_schema(TP_CRD))["spec"]
    assert schema_errors(defaulted, spec_schema) == []
    # The stored object, read by the model, is the default model...
    assert ThrottlePolicySpec.model_validate(defaulted) == ThrottlePolicySpec()
    # ...and holds every non-empty default of the model (nothing left to the model alone).

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            kept = {k: shape(v) for k, v in value.items() if v not in (None, {}, [])}
            return {k: v for k, v in kept.items() if v != {}}
        return "leaf"

    model_dump = ThrottlePolicySpec().model_dump(mode="json", by_alias=True)
    assert shape(defaulted) == shape(model_dump)


# --- examples ---------------------------------------------------------------------------


def test_there_are_enough_examples() -> None:
    kinds = [_load(p)["kind"] for p in EXAMPLES]
    assert kinds.count("ThrottlePolicy") >= 5
    assert kinds.count("ThrottleRecommendation") >= 1
    for path in EXAMPLES:
        assert path.read_text().startswith("# "), f"{path.name}: no comment header"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_crd(path: Path) -> None:
    doc = _load(path)
    crd = CRD_BY_KIND[doc["kind"]]
    assert doc["apiVersion"] == f"{crd['spec']['group']}/{_version(crd)['name']}"
    schema = _root_schema(crd)
    assert schema_errors(doc, schema) == []
    assert schema_errors(apply_defaults(doc, schema), schema) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_model(path: Path) -> None:
    doc = _load(path)
    schema = _root_schema(CRD_BY_KIND[doc["kind"]])
    parts: list[tuple[type[BaseModel], str]]
    if doc["kind"] == "ThrottlePolicy":
        parts = [(ThrottlePolicySpec, "spec")]
        if "status" in doc:
            parts.append((ThrottlePolicyStatus, "status"))
    else:
        parts = [(ThrottleRecommendationSpec, "spec"), (ThrottleRecommendationStatus, "status")]
    for model, key in parts:
        raw = doc[key]
        value = model.model_validate(raw)
        # As the API server stores it (defaulted), the model reads the same thing.
        assert model.model_validate(apply_defaults(doc, schema)[key]) == value
        # What the model writes back is valid for the CRD and reads back equal.
        dumped = value.model_dump(mode="json", by_alias=True)
        assert schema_errors(dumped, schema["properties"][key]) == []
        assert model.model_validate(dumped) == value


# --- invalid policies -------------------------------------------------------------------

SPEC_SCHEMA = _root_schema(TP_CRD)["properties"]["spec"]


def test_invalid_policy_is_rejected_by_schema_and_model() -> None:
    bad = {"tier": "gold", "throttleTarget": 2, "window": "7 days"}
    errors = schema_errors(bad, SPEC_SCHEMA)
    assert sorted(e.split(":")[0] for e in errors) == ["throttleTarget", "tier", "window"]
    with pytest.raises(ValidationError) as caught:
        ThrottlePolicySpec.model_validate(bad)
    locs = {str(e["loc"][0]) for e in caught.value.errors()}
    assert locs == {"tier", "throttleTarget", "window"}


@pytest.mark.parametrize(
    "bad",
    [
        {"tier": "gold"},
        {"mode": "Patch"},
        {"throttleTarget": 2},
        {"throttleTarget": 0},
        {"window": "7 days"},
        {"interval": "10"},
        {"cpu": {"limitPolicy": "Half"}},
        {"cpu": {"minRequest": "ten"}},
        {"memory": {"headroom": -0.1}},
        {"memory": {"minLimit": "lots"}},
        {"patch": {"maxStepDown": 0}},
        {"patch": {"maxStepUp": 0.5}},
        {"patch": {"maxConcurrentRollouts": 0}},
        {"history": {"minCoverage": 1.5}},
        {"webConcurrency": {"envName": "WEB-CONCURRENCY"}},
        {"prometheus": {"url": "ftp://prometheus:9090"}},
        {"prometheus": {"timeout": "soon"}},
        {"prometheus": {"bearerTokenSecretRef": {"name": "token", "key": "t"}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Like"}]}},
        {"selector": {"matchLabels": {"app": 1}}},
    ],
    ids=repr,
)
def test_each_invalid_field_is_rejected_by_both(bad: dict[str, Any]) -> None:
    assert schema_errors(bad, SPEC_SCHEMA) != []
    with pytest.raises(ValidationError):
        ThrottlePolicySpec.model_validate(bad)


def test_valid_edge_values_are_accepted_by_both() -> None:
    good = {
        "window": "5m",
        "interval": "1h30m",
        "throttleTarget": 0.5,
        "cpu": {"minRequest": "1", "maxRequest": "1.5", "maxLimit": None},
        "memory": {"headroom": 0, "maxLimit": "1Gi"},
        "patch": {"maxStepDown": 1, "minChange": 0},
    }
    assert schema_errors(good, SPEC_SCHEMA) == []
    ThrottlePolicySpec.model_validate(good)


# --- schema and model agree -------------------------------------------------------------

_NONE = type(None)


def _markers(annotation: Any, metadata: list[Any]) -> tuple[Any, bool, list[Any]]:
    """(bare type, nullable, flattened constraint and validator markers) of a field."""
    found = list(metadata)
    nullable = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not _NONE]
        nullable = len(args) < len(get_args(annotation))
        assert len(args) == 1, f"unsupported union {annotation}"
        annotation = args[0]
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        found += extra
    flat: list[Any] = []
    for marker in found:
        flat += marker.metadata if isinstance(marker, FieldInfo) else [marker]
    return annotation, nullable, flat


def _constraint(markers: list[Any], name: str) -> Any:
    values = [getattr(m, name) for m in markers if getattr(m, name, None) is not None]
    return values[-1] if values else None


def _text_kind(markers: list[Any]) -> str | None:
    for marker in markers:
        if isinstance(marker, PlainSerializer):
            if marker.func in (format_millicores, format_bytes):
                return "quantity"
            if marker.func is format_duration:
                return "duration"
    return None


def _compare_type(
    annotation: Any, markers: list[Any], node: Schema, path: str, check_defaults: bool
) -> list[str]:
    problems: list[str] = []
    origin = get_origin(annotation)
    crd_type = node.get("type")

    def expect_type(expected: str) -> None:
        if crd_type != expected:
            problems.append(f"{path}: CRD type {crd_type}, model wants {expected}")

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        expect_type("object")
        problems += compare_model(annotation, node, path, check_defaults)
    elif origin in (list, tuple):
        expect_type("array")
        item, *_ = get_args(annotation)
        item_type, _, item_markers = _markers(item, [])
        problems += _compare_type(item_type, item_markers, node["items"], f"{path}[]", False)
    elif origin is dict:
        expect_type("object")
        _, value = get_args(annotation)
        sub = node.get("additionalProperties")
        if not isinstance(sub, dict):
            problems.append(f"{path}: a map in the model, no additionalProperties in the CRD")
        else:
            problems += _compare_type(value, [], sub, f"{path}{{}}", False)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        expect_type("string")
        if node.get("enum") != [e.value for e in annotation]:
            problems.append(f"{path}: enum {node.get('enum')} vs model {list(annotation)}")
    elif origin is Literal:
        expect_type("string")
        if node.get("enum") != list(get_args(annotation)):
            problems.append(f"{path}: enum {node.get('enum')} vs {get_args(annotation)}")
    elif annotation is bool:
        expect_type("boolean")
    elif annotation is int and _text_kind(markers) is not None:
        expect_type("string")
        pattern = QUANTITY_PATTERN if _text_kind(markers) == "quantity" else DURATION_PATTERN
        if node.get("pattern") != pattern:
            problems.append(f"{path}: pattern {node.get('pattern')!r}, want {pattern!r}")
    elif annotation in (int, float):
        expect_type("integer" if annotation is int else "number")
        problems += _compare_bounds(markers, node, path)
    elif annotation is str:
        expect_type("string")
        problems += _compare_string(markers, node, path)
    else:
        problems.append(f"{path}: model type {annotation!r} not handled by this test")
    return problems


def _compare_bounds(markers: list[Any], node: Schema, path: str) -> list[str]:
    ge, gt = _constraint(markers, "ge"), _constraint(markers, "gt")
    le, lt = _constraint(markers, "le"), _constraint(markers, "lt")
    model_bounds = {
        "minimum": ge if ge is not None else gt,
        "exclusiveMinimum": gt is not None,
        "maximum": le if le is not None else lt,
        "exclusiveMaximum": lt is not None,
    }
    crd_bounds = {
        "minimum": node.get("minimum"),
        "exclusiveMinimum": node.get("exclusiveMinimum", False),
        "maximum": node.get("maximum"),
        "exclusiveMaximum": node.get("exclusiveMaximum", False),
    }
    if model_bounds != crd_bounds:
        return [f"{path}: bounds {crd_bounds} vs model {model_bounds}"]
    return []


def _compare_string(markers: list[Any], node: Schema, path: str) -> list[str]:
    problems: list[str] = []
    pattern = _constraint(markers, "pattern")
    if pattern == RFC3339_PATTERN:
        if node.get("format") != "date-time" or "pattern" in node:
            problems.append(f"{path}: a timestamp in the model, not format date-time in the CRD")
    elif "enum" in node:
        alternation = re.fullmatch(r"\^\(([\w|]+)\)\$", pattern or "")
        if alternation is None or alternation.group(1).split("|") != node["enum"]:
            problems.append(f"{path}: enum {node['enum']} vs model pattern {pattern!r}")
    elif node.get("pattern") != pattern:
        problems.append(f"{path}: pattern {node.get('pattern')!r} vs model {pattern!r}")
    elif node.get("format") is not None:
        problems.append(f"{path}: format {node['format']} but the model is a plain string")
    if node.get("minLength") != _constraint(markers, "min_length"):
        problems.append(f"{path}: minLength {node.get('minLength')} vs model")
    return problems


def _has_defaults(node: Schema) -> bool:
    return any("default" in sub for _, sub in walk(node) if sub is not node)


def _compare_default(field: FieldInfo, node: Schema, path: str) -> list[str]:
    if field.is_required():
        return (
            [f"{path}: CRD default but the model requires the field"] if "default" in node else []
        )
    typ: Any = (
        Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    )
    adapter: TypeAdapter[Any] = TypeAdapter(typ)
    model_default = field.get_default(call_default_factory=True, validated_data={})
    expected = adapter.dump_python(adapter.validate_python(model_default), mode="json")
    if "default" in node:
        got = adapter.dump_python(adapter.validate_python(node["default"]), mode="json")
        if got != expected:
            return [f"{path}: CRD default {node['default']!r} means {got!r}, model {expected!r}"]
        if node.get("type") == "object" and node["default"] != {}:
            return [f"{path}: object defaults must be {{}} (children carry the values)"]
        return []
    if expected in (None, [], {}):
        return []
    if isinstance(model_default, BaseModel):
        return [f"{path}: needs default {{}}"] if _has_defaults(node) else []
    return [f"{path}: model default {expected!r} missing from the CRD"]


def compare_model(
    model: type[BaseModel], node: Schema, path: str, check_defaults: bool
) -> list[str]:
    """Every difference between a pydantic model and a CRD object schema node."""
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    properties: dict[str, Schema] = node.get("properties", {})
    problems = [
        f"{path}: {name} only in the model" for name in sorted(set(fields) - set(properties))
    ]
    problems += [
        f"{path}: {name} only in the CRD" for name in sorted(set(properties) - set(fields))
    ]
    required = {alias for alias, f in fields.items() if f.is_required()}
    if required != set(node.get("required", ())):
        problems.append(
            f"{path}: required {sorted(node.get('required', ()))} vs {sorted(required)}"
        )
    for alias in sorted(set(fields) & set(properties)):
        field, sub = fields[alias], properties[alias]
        sub_path = f"{path}.{alias}" if path else alias
        annotation, nullable, markers = _markers(field.annotation, field.metadata)
        if nullable != bool(sub.get("nullable", False)):
            problems.append(
                f"{sub_path}: nullable {sub.get('nullable', False)} vs model {nullable}"
            )
        problems += _compare_type(annotation, markers, sub, sub_path, check_defaults)
        if check_defaults:
            problems += _compare_default(field, sub, sub_path)
        elif "default" in sub:
            problems.append(f"{sub_path}: a default in a schema the operator writes")
    return problems


@pytest.mark.parametrize(
    ("crd", "key", "model", "check_defaults"),
    [
        (TP_CRD, "spec", ThrottlePolicySpec, True),
        (TP_CRD, "status", ThrottlePolicyStatus, False),
        (TREC_CRD, "spec", ThrottleRecommendationSpec, True),
        (TREC_CRD, "status", ThrottleRecommendationStatus, False),
    ],
    ids=["tp-spec", "tp-status", "trec-spec", "trec-status"],
)
def test_schema_and_model_agree(
    crd: dict[str, Any], key: str, model: type[BaseModel], check_defaults: bool
) -> None:
    node = _root_schema(crd)["properties"][key]
    assert compare_model(model, node, key, check_defaults) == []


def test_the_comparison_catches_differences() -> None:
    """The walker above is itself tested: each kind of drift is reported."""
    node = copy.deepcopy(_root_schema(TP_CRD)["properties"]["spec"])
    assert compare_model(ThrottlePolicySpec, node, "spec", True) == []
    props = node["properties"]
    props["patch"]["properties"]["cooldown"]["default"] = "12h"
    props["tier"]["enum"] = ["critical", "production"]
    props["throttleTarget"]["maximum"] = 1
    props["cpu"]["properties"]["maxRequest"].pop("nullable")
    props["memory"]["properties"]["enabled"].pop("default")
    props["history"].pop("default")
    props["extra"] = {"type": "string", "description": "not in the model"}
    del props["burst"]
    found = "\n".join(compare_model(ThrottlePolicySpec, node, "spec", True))
    for expected in (
        "spec.patch.cooldown: CRD default '12h'",
        "spec.tier: enum",
        "spec.throttleTarget: bounds",
        "spec.cpu.maxRequest: nullable",
        "spec.memory.enabled: model default True missing",
        "spec.history: needs default {}",
        "spec: extra only in the CRD",
        "spec: burst only in the model",
    ):
        assert expected in found


def test_the_comparison_catches_status_differences() -> None:
    node = copy.deepcopy(_root_schema(TREC_CRD)["properties"]["status"])
    assert compare_model(ThrottleRecommendationStatus, node, "status", False) == []
    container = node["properties"]["containers"]["items"]["properties"]
    container["recommended"].pop("nullable")
    container["diagnosis"]["items"]["enum"].remove("healthy")
    container["evidence"]["properties"]["samples"]["type"] = "number"
    container["current"]["properties"]["cpuRequest"]["pattern"] = "^[0-9]+m$"
    node["properties"]["observedAt"].pop("format")
    node["properties"]["conditions"]["items"]["required"].remove("lastTransitionTime")
    node["properties"]["summary"]["properties"]["workers"]["default"] = "1"
    found = "\n".join(compare_model(ThrottleRecommendationStatus, node, "status", False))
    for expected in (
        "status.containers[].recommended: nullable",
        "status.containers[].diagnosis[]: enum",
        "status.containers[].evidence.samples: CRD type number",
        "status.containers[].current.cpuRequest: pattern",
        "status.observedAt: a timestamp in the model",
        "status.conditions[]: required",
        "status.summary.workers: a default in a schema the operator writes",
    ):
        assert expected in found


def test_date_time_format_is_checked() -> None:
    status = _load(CRDS / "examples" / "trec-checkout-api.yaml")["status"]
    schema = _root_schema(TREC_CRD)["properties"]["status"]
    assert schema_errors({**status, "observedAt": "yesterday"}, schema) != []
    assert schema_errors({**status, "observedAt": "2024-05-06T10:20:00"}, schema) != []
    assert schema_errors({**status, "observedAt": "2024-05-06T10:20:00.5+02:00"}, schema) == []
    with pytest.raises(ValidationError):
        ThrottleRecommendationStatus.model_validate({**status, "observedAt": "yesterday"})


def test_unknown_fields_in_examples_are_caught() -> None:
    """The API server would prune a misspelt field silently; the examples must not have any."""
    doc = _load(CRDS / "examples" / "tp-critical-autopatch.yaml")
    doc["spec"]["cpu"]["limitPolicyy"] = "Unset"
    assert schema_errors(doc, _root_schema(TP_CRD)) == [
        "spec.cpu: Additional properties are not allowed ('limitPolicyy' was unexpected)"
    ]
