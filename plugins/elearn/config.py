"""elearn's configuration, read in one place.

Order: ``AIRFLOW__ELEARN__<KEY>`` environment variables, then the ``[elearn]`` section of
``$AIRFLOW_HOME/airflow.cfg`` (parsed as a plain INI file, so gang workers, Bentos and the
CLI never import Airflow), then the embedded defaults below, all rooted at ``ELEARN_HOME``
(default ``./.elearn``).
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from elearn.errors import ConfigError

ENV_PREFIX = "AIRFLOW__ELEARN__"

# key -> (default template, help). Templates may use {home}.
KEYS: dict[str, tuple[str, str]] = {
    "database_url": ("sqlite:///{home}/elearn.db", "SQLAlchemy URL of elearn's database (registry, datastore catalog)"),
    "object_store": ("file://{home}/objectstore", "root URI of the object store: file:///path or s3://bucket/prefix"),
    "s3_endpoint_url": ("", "S3 API endpoint for an s3:// object store (MinIO, Ceph, moto); empty = AWS"),
    "s3_region": ("us-east-1", "S3 region"),
    "aws_conn_id": ("aws_default", "Airflow connection whose credentials operators hand to S3 clients"),
    "staging_dir": ("{home}/staging", "local folder where Spark writes Parquet before it is committed"),
    "bentoml_home": ("{home}/bentoml", "BENTOML_HOME for the model and Bento stores"),
    "spark_conn_id": ("spark_default", "Airflow Spark connection the preprocessing is submitted through (the Apache "
                                       "Spark provider's: host = master such as spark://host:7077 or "
                                       "k8s://https://host:443, extra deploy-mode, namespace, spark-binary); without "
                                       "such a connection Spark runs in local[*] on the worker"),
    "spark_image": ("elearn/spark-job:latest", "image of the Spark driver and executors when the master is k8s://"),
    "spark_driver_memory": ("2g", "spark.driver.memory"),
    "spark_shuffle_partitions": ("4", "spark.sql.shuffle.partitions"),
    "compute_driver": ("local", "where gangs run: local (processes on this host) or kubernetes"),
    "local_slots": ("4", "gang worker slots on this host (local driver)"),
    "local_gpus": ("auto", "GPUs this host lends to gangs (local driver): a number, or auto = what nvidia-smi "
                           "lists; each GPU goes to one gang worker at a time"),
    "team_quotas": ("", "per-team limits on what running gangs hold, JSON: "
                        "{\"vision\": {\"gpu\": 8, \"cpu\": 64}, \"default\": {\"gpu\": 2}}; "
                        "a team without an entry uses \"default\"; empty = no limits"),
    "gang_backend": ("volcano", "gang scheduling on Kubernetes: volcano, coscheduling, kueue, workload or builtin"),
    "k8s_namespace": ("elearn-training", "namespace where the kubernetes driver creates gang pods"),
    "worker_image": ("elearn/training-worker:latest", "image of gang workers on Kubernetes"),
    "worker_secret": ("elearn-worker", "Secret in k8s_namespace that gang pods take their credentials from (envFrom: "
                                       "AIRFLOW__ELEARN__DATABASE_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
                                       "empty = none. Nothing secret is ever written into a pod"),
    "proxy_port": ("8700", "port on 127.0.0.1 of the local release proxy (nginx) in front of the Bentos"),
    "serving_backend": ("local", "where released versions serve: local (bentoml serve and nginx on this host) or "
                                 "kubernetes (a Deployment and Service per version, a weighted Gateway API route)"),
    "serving_namespace": ("elearn-models", "namespace of the Bentos' Deployments, Services and routes (kubernetes)"),
    "serving_gateway": ("", "the Gateway API Gateway the routes attach to, NAME or NAMESPACE/NAME (kubernetes)"),
    "bento_image_registry": ("", "where Bento images are pushed (bentoml containerize, then push): a version's "
                                 "image is REGISTRY/<bento tag>; empty = the bare Bento tag"),
    "serving_replicas": ("2", "pods per served version (kubernetes)"),
    "prometheus_url": ("", "base URL of the Prometheus that scrapes the Bentos (http://prometheus.monitoring:9090), "
                           "which the live gates query on Kubernetes; empty = not used"),
}


def elearn_home() -> Path:
    return Path(os.environ.get("ELEARN_HOME", ".elearn")).resolve()


_CFG_SECTIONS: dict[str, tuple[tuple[int, int], dict[str, str]]] = {}  # path -> ((mtime_ns, size), section)


def _airflow_cfg_section() -> dict[str, str]:
    """The ``[elearn]`` section of airflow.cfg, parsed again only when the file changes (it is
    ~2,000 lines: parsing it for each key cost an API call ~150 ms)."""
    airflow_home = os.environ.get("AIRFLOW_HOME") or str(elearn_home() / "airflow")
    path = Path(airflow_home) / "airflow.cfg"
    try:
        st = path.stat()
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _CFG_SECTIONS.get(str(path))
    if cached is not None and cached[0] == stamp:
        return dict(cached[1])
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error as e:
        raise ConfigError(f"cannot parse {path}: {e}; fix the file or remove its [elearn] section") from e
    section = dict(parser["elearn"]) if parser.has_section("elearn") else {}
    _CFG_SECTIONS[str(path)] = (stamp, section)
    return dict(section)


def get(key: str) -> str:
    """The value of one configuration key (see ``KEYS``)."""
    if key not in KEYS:
        raise ConfigError(f"unknown elearn configuration key {key!r}; known keys: {', '.join(KEYS)}")
    env = os.environ.get(ENV_PREFIX + key.upper())
    if env:
        return env
    cfg = _airflow_cfg_section().get(key)
    if cfg:
        return cfg
    return KEYS[key][0].format(home=elearn_home())


@dataclass(frozen=True)
class ElearnConfig:
    """A resolved, validated configuration snapshot."""

    home: Path
    database_url: str
    object_store: str
    s3_endpoint_url: str
    s3_region: str
    staging_dir: Path
    bentoml_home: Path
    spark_conn_id: str
    spark_driver_memory: str
    spark_shuffle_partitions: int
    compute_driver: str
    local_slots: int
    team_quotas: dict = field(default_factory=dict)
    gang_backend: str = "volcano"
    k8s_namespace: str = "elearn-training"
    worker_image: str = "elearn/training-worker:latest"
    spark_image: str = "elearn/spark-job:latest"
    worker_secret: str = "elearn-worker"
    proxy_port: int = 8700
    serving_backend: str = "local"
    serving_namespace: str = "elearn-models"
    serving_gateway: str = ""
    bento_image_registry: str = ""
    serving_replicas: int = 2
    prometheus_url: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not (self.object_store.startswith("file://") or self.object_store.startswith("s3://")):
            raise ConfigError(
                f"object_store {self.object_store!r} must start with file:// or s3://; "
                f"set {ENV_PREFIX}OBJECT_STORE"
            )
        if self.compute_driver not in ("local", "kubernetes"):
            raise ConfigError(
                f"compute_driver {self.compute_driver!r} is not one of local, kubernetes; "
                f"set {ENV_PREFIX}COMPUTE_DRIVER"
            )
        if self.serving_backend not in SERVING_BACKENDS:
            raise ConfigError(f"serving_backend {self.serving_backend!r} is not one of "
                              f"{', '.join(SERVING_BACKENDS)}; set {ENV_PREFIX}SERVING_BACKEND")
        if self.serving_replicas < 1:
            raise ConfigError(f"serving_replicas must be at least 1; set {ENV_PREFIX}SERVING_REPLICAS")
        if self.prometheus_url and not self.prometheus_url.startswith(("http://", "https://")):
            raise ConfigError(f"prometheus_url {self.prometheus_url!r} must start with http:// or https://; "
                              f"set {ENV_PREFIX}PROMETHEUS_URL to Prometheus' base URL")
        if self.spark_shuffle_partitions < 1 or self.local_slots < 1:
            raise ConfigError("spark_shuffle_partitions and local_slots must be positive integers")
        if self.gang_backend not in GANG_BACKENDS:
            raise ConfigError(f"gang_backend {self.gang_backend!r} is not one of {', '.join(GANG_BACKENDS)}; "
                              f"set {ENV_PREFIX}GANG_BACKEND")
        for team, limits in self.team_quotas.items():
            if not isinstance(limits, dict) or set(limits) - {"gpu", "cpu"} or any(
                    not isinstance(v, (int, float)) or v < 0 for v in limits.values()):
                raise ConfigError(f"team_quotas[{team!r}] = {limits!r} must map gpu/cpu to non-negative numbers; "
                                  f"fix {ENV_PREFIX}TEAM_QUOTAS")

    def quota_of(self, team: str) -> dict | None:
        """The team's limits (``{"gpu": n, "cpu": n}``, either may be absent), or None: unlimited."""
        return self.team_quotas.get(team, self.team_quotas.get("default"))

    @property
    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg SQL-catalog properties: the catalog lives in elearn's database."""
        props = {"uri": self.database_url, "warehouse": self.object_store.rstrip("/") + "/warehouse"}
        if self.object_store.startswith("s3://"):
            props.update(s3_properties(self.s3_endpoint_url, self.s3_region))
        return props


def s3_properties(endpoint_url: str, region: str) -> dict[str, str]:
    """pyiceberg FileIO properties for S3; credentials from the usual AWS variables."""
    props = {"s3.region": region, "s3.force-virtual-addressing": "false"}
    if endpoint_url:
        props["s3.endpoint"] = endpoint_url
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        props["s3.access-key-id"] = os.environ["AWS_ACCESS_KEY_ID"]
        props["s3.secret-access-key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if os.environ.get("AWS_SESSION_TOKEN"):
        props["s3.session-token"] = os.environ["AWS_SESSION_TOKEN"]
    return props


GANG_BACKENDS = ("volcano", "coscheduling", "kueue", "workload", "builtin")
SERVING_BACKENDS = ("local", "kubernetes")


def _json_object(key: str) -> dict:
    raw = get(key).strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()} is not valid JSON ({e}); give an object such as "
                          f'{{"default": {{"gpu": 2}}}}') from e
    if not isinstance(value, dict):
        raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be a JSON object, got {type(value).__name__}")
    return value


def _int(key: str) -> int:
    raw = get(key)
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()}={raw!r} is not an integer") from e


# key -> what replaced it: set anywhere, they stop the load with that message
RETIRED: dict[str, str] = {
    "spark_master": "the Spark master now comes from the Airflow connection named by spark_conn_id (default "
                    "spark_default), e.g. AIRFLOW_CONN_SPARK_DEFAULT='{\"conn_type\": \"spark\", \"host\": "
                    "\"spark://host:7077\"}'; without one Spark runs in local[*]",
}


def load() -> ElearnConfig:
    """Resolve every key now (environment and airflow.cfg may change between calls)."""
    home = elearn_home()
    for key, instead in RETIRED.items():
        if os.environ.get(ENV_PREFIX + key.upper()) or _airflow_cfg_section().get(key):
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} (or {key} in airflow.cfg) is no longer read: {instead}; "
                              f"remove it")
    return ElearnConfig(
        home=home,
        database_url=get("database_url"),
        object_store=get("object_store"),
        s3_endpoint_url=get("s3_endpoint_url"),
        s3_region=get("s3_region"),
        staging_dir=Path(get("staging_dir")),
        bentoml_home=Path(get("bentoml_home")),
        spark_conn_id=get("spark_conn_id"),
        spark_image=get("spark_image"),
        spark_driver_memory=get("spark_driver_memory"),
        spark_shuffle_partitions=_int("spark_shuffle_partitions"),
        compute_driver=get("compute_driver"),
        local_slots=_int("local_slots"),
        team_quotas=_json_object("team_quotas"),
        gang_backend=get("gang_backend"),
        k8s_namespace=get("k8s_namespace"),
        worker_image=get("worker_image"),
        worker_secret=get("worker_secret") if os.environ.get(ENV_PREFIX + "WORKER_SECRET") != "" else "",
        proxy_port=_int("proxy_port"),
        serving_backend=get("serving_backend"),
        serving_namespace=get("serving_namespace"),
        serving_gateway=get("serving_gateway"),
        bento_image_registry=get("bento_image_registry").rstrip("/"),
        serving_replicas=_int("serving_replicas"),
        prometheus_url=get("prometheus_url").strip(),
    )
