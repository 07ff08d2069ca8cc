"""Kubernetes objects for serving model versions and splitting traffic between them, as plain dicts.

Each released version runs as its own Deployment + Service (``<model>-v<N>``) from the Bento's
image; one Gateway API ``HTTPRoute`` sends ``stable_weight`` of the requests to the stable
version's Service and the rest to the canary's. Promotion and rollback only change the route's
weights (and, once done, the versions' Deployments). Pure functions, no API calls.
"""

from __future__ import annotations

import re

from elearn.errors import InvalidInput

PORT = 3000  # what `bentoml serve` listens on
GRPC_PORT = 3001  # the Bento's Open Inference Protocol over gRPC (ELEARN_SERVE_GRPC_PORT)
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$")


def version_name(model: str, version: int) -> str:
    """``flight_delay`` v3 -> ``flight-delay-v3`` (a DNS-1035 label)."""
    name = f"{re.sub(r'[^a-z0-9-]+', '-', model.lower()).strip('-')}-v{version}"
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(f"model {model!r} v{version} gives the name {name!r}, which is not a DNS-1035 label")
    return name


def bento_image(bento_tag: str, registry: str = "") -> str:
    """The image `bentoml containerize <bento tag>` builds, as pushed to ``registry`` (config
    ``bento_image_registry``): ``registry.example/flight-delay:v3``; no registry: the bare tag."""
    return f"{registry.rstrip('/')}/{bento_tag}" if registry else bento_tag


def model_name(model: str) -> str:
    """``flight_delay`` -> ``flight-delay``: the route's name and the versions' common prefix."""
    return version_name(model, 0)[:-3]


def model_labels(model: str) -> dict[str, str]:
    """The labels every serving object of ``model`` carries (what finds them again)."""
    return {"app.kubernetes.io/managed-by": "elearn", "elearn.io/model": model.lower().replace("_", "-")}


def _labels(model: str, version: int) -> dict[str, str]:
    return {"app.kubernetes.io/name": model_name(model), **model_labels(model),
            "app.kubernetes.io/component": "model-server", "elearn.io/version": str(version)}


def version_deployment(model: str, version: int, *, image: str, namespace: str, replicas: int = 2,
                       cpu: str = "1", memory: str = "2Gi") -> dict:
    """The Deployment serving one version's Bento image (`bentoml serve` on port 3000) with
    readiness and liveness on BentoML's /readyz and /livez."""
    if not image:
        raise InvalidInput(f"{model} v{version}: a Bento image is needed (bentoml containerize; `bentoml build` "
                           f"wrote its Dockerfile)")
    if replicas < 1:
        raise InvalidInput(f"{model} v{version}: replicas must be at least 1")
    from elearn.compute.admission import parse_quantity

    name, labels = version_name(model, version), _labels(model, version)
    # a server process per whole core of the pod (the container sees the node's cores, not its limit)
    workers = max(1, int(parse_quantity(cpu)))
    container = {
        "name": "bento", "image": image, "args": ["serve"],
        "env": [{"name": "ELEARN_SERVE_WORKERS", "value": str(workers)},
                {"name": "ELEARN_SERVE_GRPC_PORT", "value": str(GRPC_PORT)}],
        "ports": [{"name": "http", "containerPort": PORT}, {"name": "grpc", "containerPort": GRPC_PORT}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10,
                          "initialDelaySeconds": 30},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsNonRoot": True, "readOnlyRootFilesystem": False},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"elearn.io/model": labels["elearn.io/model"],
                                                                   "elearn.io/version": str(version)}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container], "automountServiceAccountToken": False,
                                       "securityContext": {"runAsNonRoot": True, "runAsUser": 1034,
                                                           "seccompProfile": {"type": "RuntimeDefault"}}}}},
    }


def version_service(model: str, version: int, *, namespace: str) -> dict:
    name, labels = version_name(model, version), _labels(model, version)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": {"elearn.io/model": labels["elearn.io/model"], "elearn.io/version": str(version)},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                               {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc",
                                "appProtocol": "kubernetes.io/h2c"}]}}


def traffic_route(model: str, *, namespace: str, gateway: str, stable: int, canary: int | None,
                  canary_weight: int, hostname: str | None = None, gateway_namespace: str | None = None,
                  kind: str = "HTTPRoute") -> dict:
    """The route splitting traffic: ``100 - canary_weight`` % to ``stable``, ``canary_weight`` %
    to ``canary`` (weights are relative integers in the Gateway API; 0 keeps a backend idle).
    ``kind``: ``HTTPRoute`` (port 80 of each version's Service) or ``GRPCRoute`` (its gRPC port:
    the Open Inference Protocol), split alike."""
    if canary is not None and not 0 <= canary_weight <= 100:
        raise InvalidInput(f"canary weight {canary_weight} must be between 0 and 100 (percent)")
    if canary is not None and canary == stable:
        raise InvalidInput(f"the canary must be another version than the stable one (v{stable})")
    if kind not in ROUTE_PORTS:
        raise InvalidInput(f"a route is one of {', '.join(ROUTE_PORTS)}, not {kind!r}")
    port = ROUTE_PORTS[kind]
    backends = [{"name": version_name(model, stable), "port": port,
                 "weight": 100 - (canary_weight if canary else 0)}]
    if canary is not None:
        backends.append({"name": version_name(model, canary), "port": port, "weight": canary_weight})
    parent = {"name": gateway}
    if gateway_namespace:
        parent["namespace"] = gateway_namespace
    rule = {"backendRefs": backends}
    if kind == "HTTPRoute":
        rule = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], **rule}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
             "metadata": {"name": model_name(model), "namespace": namespace,
                          "labels": {"app.kubernetes.io/managed-by": "elearn"}},
             "spec": {"parentRefs": [parent], "rules": [rule]}}
    if hostname:
        route["spec"]["hostnames"] = [hostname]
    return route


ROUTE_PORTS = {"HTTPRoute": 80, "GRPCRoute": GRPC_PORT}  # the Service port each kind of route sends to


def release_objects(model: str, *, stable: int, canary: int | None, canary_weight: int, images: dict[int, str],
                    namespace: str, gateway: str, replicas: int = 2) -> list[dict]:
    """Everything a release needs on the cluster: both versions' Deployments and Services, then the
    routes (HTTP, and gRPC for the Open Inference Protocol)."""
    versions = [stable] + ([canary] if canary is not None else [])
    missing = [v for v in versions if not images.get(v)]
    if missing:
        raise InvalidInput(f"no Bento image for {model} " + ", ".join(f"v{v}" for v in missing))
    objects = []
    for v in versions:
        objects += [version_deployment(model, v, image=images[v], namespace=namespace, replicas=replicas),
                    version_service(model, v, namespace=namespace)]
    return objects + [traffic_route(model, namespace=namespace, gateway=gateway, stable=stable, canary=canary,
                                    canary_weight=canary_weight, kind=kind) for kind in ROUTE_PORTS]
