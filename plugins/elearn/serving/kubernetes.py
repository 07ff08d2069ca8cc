"""The ``kubernetes`` serving backend: each version with traffic runs as a Deployment and a
Service (``<model>-v<N>``) from its Bento's image, and one Gateway API HTTPRoute splits the
traffic by the release's weights. Objects are built by ``elearn.serving.k8s_manifests`` (the
chart's ``serving`` objects are the same ones) and applied with server-side apply under the
field manager ``elearn``; the model's versions that no longer get traffic are deleted. The
live gates read the Bentos' own request metrics from Prometheus (``prometheus_url``).
"""

from __future__ import annotations

from elearn import config
from elearn.errors import ConfigError
from elearn.kube import api_call, client_from_environment
from elearn.serving import k8s_manifests
from elearn.serving.backend import ServingBackend

FIELD_MANAGER = "elearn"
REQUEST_TIMEOUT_S = 30.0
# kind -> (API path prefix, resource plural); what this backend creates and deletes
RESOURCES = {"Deployment": ("apis/apps/v1", "deployments"), "Service": ("api/v1", "services"),
             "HTTPRoute": ("apis/gateway.networking.k8s.io/v1", "httproutes"),
             "GRPCRoute": ("apis/gateway.networking.k8s.io/v1", "grpcroutes")}
VERSIONED = ("Deployment", "Service")  # one per served version; the routes are one per model


def gateway_ref(value: str) -> tuple[str, str | None]:
    """``serving_gateway`` (NAME or NAMESPACE/NAME) -> (name, namespace or None)."""
    namespace, _, name = value.strip().rpartition("/")
    if not name:
        raise ConfigError("serving_gateway is empty: name the Gateway API Gateway the models' routes attach to "
                          "(NAME or NAMESPACE/NAME); set AIRFLOW__ELEARN__SERVING_GATEWAY")
    return name, namespace or None


class KubernetesServing(ServingBackend):
    name = "kubernetes"

    def __init__(self, api_client=None, *, namespace: str | None = None, gateway: str | None = None,
                 image_registry: str | None = None, replicas: int | None = None):
        """``api_client``: a ``kubernetes.client.ApiClient`` (None: the in-cluster account, else
        ``$KUBECONFIG``); the rest default to the configuration (``serving_*``, ``bento_image_registry``)."""
        cfg = config.load()
        self._api_client = api_client
        self.namespace = namespace or cfg.serving_namespace
        self.gateway = gateway if gateway is not None else cfg.serving_gateway
        self.image_registry = image_registry if image_registry is not None else cfg.bento_image_registry
        self.replicas = replicas or cfg.serving_replicas

    @property
    def api_client(self):
        if self._api_client is None:
            self._api_client = client_from_environment("the kubernetes serving backend",
                                                       "set serving_backend=local")
        return self._api_client

    # ------------------------------------------------------------------ what the release asks for
    def objects(self, release) -> list[dict]:
        """The Deployments and Services of the versions with traffic, and the routes (HTTP, gRPC) with the weights."""
        from elearn.registry import get_store

        store = get_store()
        serving = [v for v, weight in release.weights.items() if weight > 0]
        images = {v: k8s_manifests.bento_image(store.get_version(release.model, v).bento_tag or "", self.image_registry)
                  for v in serving}
        if len(serving) == 2:
            stable, canary, canary_weight = release.stable, release.canary, release.canary_weight
        else:
            stable, canary, canary_weight = serving[0], None, 0
        name, gateway_namespace = gateway_ref(self.gateway)
        objects = []
        for v in serving:
            objects += [k8s_manifests.version_deployment(release.model, v, image=images[v], namespace=self.namespace,
                                                         replicas=self.replicas),
                        k8s_manifests.version_service(release.model, v, namespace=self.namespace)]
        return objects + [k8s_manifests.traffic_route(release.model, namespace=self.namespace, gateway=name,
                                                      gateway_namespace=gateway_namespace, stable=stable,
                                                      canary=canary, canary_weight=canary_weight, kind=kind)
                          for kind in k8s_manifests.ROUTE_PORTS]

    # ------------------------------------------------------------------ the backend
    def apply(self, release) -> str:
        wanted = self.objects(release)
        for obj in wanted:  # Deployments and Services first: the routes never point at nothing
            self._apply(obj)
        keep = {(o["kind"], o["metadata"]["name"]) for o in wanted}
        for kind in VERSIONED:
            for name in self._names(kind, release.model):
                if (kind, name) not in keep:
                    self._delete(kind, name)
        route = k8s_manifests.model_name(release.model)
        return f"HTTPRoute and GRPCRoute {self.namespace}/{route} on Gateway {self.gateway}"

    def stats(self, release, since: float) -> dict:
        """From Prometheus (``prometheus_url``), over the window from ``since`` to now."""
        import time

        from elearn.serving.prometheus import configured

        prometheus = configured()
        if prometheus is None:
            raise ConfigError("prometheus_url is empty: on Kubernetes the live gates read the Bentos' request "
                              "metrics from Prometheus; set AIRFLOW__ELEARN__PROMETHEUS_URL (docs/serving.md)")
        versions = [v for v in (release.stable, release.canary) if v is not None]
        return prometheus.stats(release.model, versions, window_s=max(1.0, time.time() - since))

    def down(self, model: str) -> None:
        for kind in VERSIONED:
            for name in self._names(kind, model):
                self._delete(kind, name)
        for kind in k8s_manifests.ROUTE_PORTS:
            self._delete(kind, k8s_manifests.model_name(model))

    # ------------------------------------------------------------------ API calls
    def _path(self, kind: str, name: str | None = None) -> str:
        prefix, plural = RESOURCES[kind]
        return f"/{prefix}/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")

    def _call(self, method: str, path: str, **kwargs):
        return self.api_client.call_api(path, method, response_types_map={200: "object", 201: "object"},
                                        auth_settings=["BearerToken"],
                                        _return_http_data_only=True, _request_timeout=REQUEST_TIMEOUT_S, **kwargs)

    @api_call
    def _apply(self, obj: dict) -> dict:
        """Server-side apply: create or update the fields elearn owns (``force``: elearn's word wins)."""
        return self._call("PATCH", self._path(obj["kind"], obj["metadata"]["name"]),
                          query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                          header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                          body=obj)

    @api_call
    def _names(self, kind: str, model: str) -> list[str]:
        """Names of ``kind`` objects elearn made for ``model`` (checked here too, not only by the selector)."""
        labels = k8s_manifests.model_labels(model)
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        listed = self._call("GET", self._path(kind), query_params=[("labelSelector", selector)],
                            header_params={"Accept": "application/json"})
        return sorted(o["metadata"]["name"] for o in listed.get("items", [])
                      if labels.items() <= (o["metadata"].get("labels") or {}).items())

    @api_call
    def _delete(self, kind: str, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self._call("DELETE", self._path(kind, name), header_params={"Accept": "application/json"})
        except ApiException as e:
            if e.status != 404:  # gone already: what we wanted
                raise
