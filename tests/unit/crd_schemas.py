"""Validate custom resources against the real CRD schemas in ``../shared/crds``.

``kubernetes-validate`` covers only built-in kinds, so PodGroups (Volcano, scheduler-plugins)
are checked here against ``spec.versions[].schema.openAPIV3Schema`` of their upstream CRDs.
CRD schemas allow unknown fields (the API server prunes them silently), which would let a
misspelled field pass; :func:`validate_custom_resource` closes every object schema that lists
its properties, as ``kubectl apply --validate=strict`` does.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

CRD_DIR = Path(__file__).resolve().parents[1] / "crds"  # copied from upstream; see its README


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """``{(apiVersion, kind): strict openAPIV3Schema}`` for every served version of every CRD."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict(schema: dict) -> dict:
    """A copy of ``schema`` in which every object with listed properties rejects others."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def validate_custom_resource(obj: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` fits its CRD; ``KeyError`` when no
    CRD in ``CRD_DIR`` serves its apiVersion and kind."""
    schema = crd_schemas()[(obj["apiVersion"], obj["kind"])]
    jsonschema.Draft7Validator(schema).validate(obj)
