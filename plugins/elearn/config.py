"""elearn's configuration, read in one place: ``load()`` gives the validated ``ElearnConfig``.

Order: ``AIRFLOW__ELEARN__<KEY>`` environment variables, then the ``[elearn]`` section of
``$AIRFLOW_HOME/airflow.cfg`` (parsed as a plain INI file, so gang workers, Bentos and the
CLI never import Airflow), then the defaults in ``KEYS``, all rooted at ``ELEARN_HOME``
(default ``./.elearn``). Each key's default, meaning and parsing are written once, in ``KEYS``;
``ElearnConfig.__post_init__`` checks the values together.
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from elearn.errors import ConfigError

ENV_PREFIX = "AIRFLOW__ELEARN__"

COMPUTE_DRIVERS = ("local", "kubernetes")
GANG_BACKENDS = ("volcano", "coscheduling", "kueue", "workload", "builtin")
SERVING_BACKENDS = ("local", "kubernetes")


# ---------------------------------------------------------------------------------------------- parsing
# Each turns a key's text into its value, or raises ConfigError naming the variable to fix.

def _text(key: str, raw: str) -> str:
    return raw


def _stripped(key: str, raw: str) -> str:
    return raw.strip()


def _no_trailing_slash(key: str, raw: str) -> str:
    return raw.rstrip("/")


def _path(key: str, raw: str) -> Path:
    return Path(raw)


def _integer(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()}={raw!r} is not an integer") from e


def _count_or_auto(key: str, raw: str) -> int | None:
    """A whole number ≥ 0, or None for ``auto`` (the caller finds out, e.g. from nvidia-smi)."""
    raw = raw.strip().lower()
    if raw in ("", "auto"):
        return None
    try:
        count = int(raw)
    except ValueError as e:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()}={raw!r} must be a whole number or auto") from e
    if count < 0:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()}={count} must be 0 or more")
    return count


def _json_object(key: str, raw: str) -> dict:
    raw = raw.strip()
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


class Key(NamedTuple):
    """One configuration key: its default (a template that may use ``{home}``), what it means,
    and how its text becomes the value ``ElearnConfig`` holds."""

    default: str
    help: str
    parse: Callable[[str, str], object] = _text


KEYS: dict[str, Key] = {
    "database_url": Key("sqlite:///{home}/elearn.db",
                        "SQLAlchemy URL of elearn's database (registry, datastore catalog)"),
    "object_store": Key("file://{home}/objectstore",
                        "root URI of the object store: file:///path or s3://bucket/prefix"),
    "s3_endpoint_url": Key("", "S3 API endpoint for an s3:// object store (MinIO, Ceph, moto); empty = AWS"),
    "s3_region": Key("us-east-1", "S3 region"),
    "aws_conn_id": Key("aws_default", "Airflow connection whose credentials operators hand to S3 clients"),
    "staging_dir": Key("{home}/staging", "local folder where Spark writes Parquet before it is committed", _path),
    "bentoml_home": Key("{home}/bentoml", "BENTOML_HOME for the model and Bento stores", _path),
    "spark_conn_id": Key("spark_default",
                         "Airflow Spark connection the preprocessing is submitted through (the Apache Spark "
                         "provider's: host = master such as spark://host:7077 or k8s://https://host:443, extra "
                         "deploy-mode, namespace, spark-binary); without such a connection Spark runs in local[*] "
                         "on the worker"),
    "spark_image": Key("elearn/spark-job:latest", "image of the Spark driver and executors when the master is k8s://"),
    "spark_driver_memory": Key("2g", "spark.driver.memory"),
    "spark_shuffle_partitions": Key("4", "spark.sql.shuffle.partitions", _integer),
    "compute_driver": Key("local", "where gangs run: local (processes on this host) or kubernetes"),
    "local_slots": Key("4", "gang worker slots on this host (local driver)", _integer),
    "local_gpus": Key("auto", "GPUs this host lends to gangs (local driver): a number, or auto = what nvidia-smi "
                              "lists; each GPU goes to one gang worker at a time", _count_or_auto),
    "team_quotas": Key("", "per-team limits on what running gangs hold, JSON: "
                           "{\"vision\": {\"gpu\": 8, \"cpu\": 64}, \"default\": {\"gpu\": 2}}; "
                           "a team without an entry uses \"default\"; empty = no limits", _json_object),
    "gang_backend": Key("volcano", "gang scheduling on Kubernetes: " + ", ".join(GANG_BACKENDS)),
    "k8s_namespace": Key("elearn-training", "namespace where the kubernetes driver creates gang pods"),
    "worker_image": Key("elearn/training-worker:latest", "image of gang workers on Kubernetes"),
    "worker_secret": Key("elearn-worker",
                         "Secret in k8s_namespace that gang pods take their credentials from (envFrom: "
                         "AIRFLOW__ELEARN__DATABASE_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
                         "empty = none. Nothing secret is ever written into a pod"),
    "proxy_port": Key("8700", "port on 127.0.0.1 of the local release proxy (nginx) in front of the Bentos",
                      _integer),
    "serving_backend": Key("local", "where released versions serve: local (bentoml serve and nginx on this host) "
                                    "or kubernetes (a Deployment and Service per version, a weighted Gateway API "
                                    "route)"),
    "serving_namespace": Key("elearn-models",
                             "namespace of the Bentos' Deployments, Services and routes (kubernetes)"),
    "serving_gateway": Key("", "the Gateway API Gateway the routes attach to, NAME or NAMESPACE/NAME (kubernetes)"),
    "bento_image_registry": Key("", "where Bento images are pushed (bentoml containerize, then push): a version's "
                                    "image is REGISTRY/<bento tag>; empty = the bare Bento tag", _no_trailing_slash),
    "serving_replicas": Key("2", "pods per served version (kubernetes)", _integer),
    "prometheus_url": Key("", "base URL of the Prometheus that scrapes the Bentos "
                              "(http://prometheus.monitoring:9090), which the live gates query on Kubernetes; "
                              "empty = not used", _stripped),
}

# Keys whose empty environment variable means "empty", not "unset": the default would put
# something back that the user turned off.
EMPTY_MEANS_NONE = ("worker_secret",)

# key -> what replaced it: set anywhere, they stop the load with that message
RETIRED: dict[str, str] = {
    "spark_master": "the Spark master now comes from the Airflow connection named by spark_conn_id (default "
                    "spark_default), e.g. AIRFLOW_CONN_SPARK_DEFAULT='{\"conn_type\": \"spark\", \"host\": "
                    "\"spark://host:7077\"}'; without one Spark runs in local[*]",
}


# ---------------------------------------------------------------------------------------------- the object

@dataclass(frozen=True)
class ElearnConfig:
    """A resolved, validated configuration snapshot: one field per key of ``KEYS`` (whose
    defaults and meanings are written there), plus ``home``. Treat it as read-only: ``load()``
    hands the same object to every caller until the configuration changes."""

    home: Path
    database_url: str
    object_store: str
    s3_endpoint_url: str
    s3_region: str
    aws_conn_id: str
    staging_dir: Path
    bentoml_home: Path
    spark_conn_id: str
    spark_image: str
    spark_driver_memory: str
    spark_shuffle_partitions: int
    compute_driver: str
    local_slots: int
    local_gpus: int | None  # None: what nvidia-smi lists
    team_quotas: dict
    gang_backend: str
    k8s_namespace: str
    worker_image: str
    worker_secret: str
    proxy_port: int
    serving_backend: str
    serving_namespace: str
    serving_gateway: str
    bento_image_registry: str
    serving_replicas: int
    prometheus_url: str

    def __post_init__(self):
        if "://" not in self.database_url:  # never echo it: it may hold a password
            raise ConfigError(f"database_url is not a SQLAlchemy URL such as sqlite:////path/elearn.db or "
                              f"postgresql+psycopg2://user:pw@host/db; set {ENV_PREFIX}DATABASE_URL")
        if not (self.object_store.startswith("file://") or self.object_store.startswith("s3://")):
            raise ConfigError(
                f"object_store {self.object_store!r} must start with file:// or s3://; "
                f"set {ENV_PREFIX}OBJECT_STORE"
            )
        for key, allowed in (("compute_driver", COMPUTE_DRIVERS), ("serving_backend", SERVING_BACKENDS),
                             ("gang_backend", GANG_BACKENDS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} {getattr(self, key)!r} is not one of {', '.join(allowed)}; "
                                  f"set {ENV_PREFIX}{key.upper()}")
        if self.serving_replicas < 1:
            raise ConfigError(f"serving_replicas must be at least 1; set {ENV_PREFIX}SERVING_REPLICAS")
        if self.prometheus_url and not self.prometheus_url.startswith(("http://", "https://")):
            raise ConfigError(f"prometheus_url {self.prometheus_url!r} must start with http:// or https://; "
                              f"set {ENV_PREFIX}PROMETHEUS_URL to Prometheus' base URL")
        if self.spark_shuffle_partitions < 1 or self.local_slots < 1:
            raise ConfigError("spark_shuffle_partitions and local_slots must be positive integers")
        if not 0 < self.proxy_port < 65536:
            raise ConfigError(f"proxy_port {self.proxy_port} is not a TCP port; set {ENV_PREFIX}PROXY_PORT")
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


# ---------------------------------------------------------------------------------------------- sources

def elearn_home() -> Path:
    return Path(os.environ.get("ELEARN_HOME", ".elearn")).resolve()


def _airflow_cfg(home: Path) -> tuple[Path, tuple[int, int] | None]:
    """Where airflow.cfg is and its (modification time, size), or None when there is none."""
    path = Path(os.environ.get("AIRFLOW_HOME") or home / "airflow") / "airflow.cfg"
    try:
        st = path.stat()
    except OSError:
        return path, None
    return path, (st.st_mtime_ns, st.st_size)


_CFG_SECTIONS: dict[str, tuple[tuple[int, int], dict[str, str]]] = {}  # path -> ((mtime_ns, size), section)


def _airflow_cfg_section(path: Path, stamp: tuple[int, int] | None) -> dict[str, str]:
    """The ``[elearn]`` section of airflow.cfg, parsed again only when the file changes (it is
    ~2,000 lines: parsing it for each key cost an API call ~150 ms). Read-only."""
    if stamp is None:
        return {}
    cached = _CFG_SECTIONS.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error as e:
        raise ConfigError(f"cannot parse {path}: {e}; fix the file or remove its [elearn] section") from e
    section = dict(parser["elearn"]) if parser.has_section("elearn") else {}
    _CFG_SECTIONS[str(path)] = (stamp, section)
    return section


def _resolve(home: Path, env: dict[str, str | None], section: dict[str, str]) -> ElearnConfig:
    for key, instead in RETIRED.items():
        if env[key] or section.get(key):
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} (or {key} in airflow.cfg) is no longer read: {instead}; "
                              f"remove it")
    values = {}
    for key, spec in KEYS.items():
        if key in EMPTY_MEANS_NONE and env[key] == "":
            raw = ""
        else:
            raw = env[key] or section.get(key) or spec.default.format(home=home)
        values[key] = spec.parse(key, raw)
    return ElearnConfig(home=home, **values)


# The last configuration resolved, with what it was resolved from: the environment and
# airflow.cfg may change between calls (tests, export_aws_credentials), but while they do not,
# a call costs a stat and a few dictionary lookups instead of parsing every key again.
_last: tuple[tuple, ElearnConfig] | None = None
_NAMES = (*KEYS, *RETIRED)
_VARIABLES = tuple(ENV_PREFIX + key.upper() for key in _NAMES)


def load() -> ElearnConfig:
    """The configuration now, validated; raises ``ConfigError`` naming the key to fix.

    Cheap to call on every request: the result is reused while ``ELEARN_HOME``, ``AIRFLOW_HOME``,
    the ``AIRFLOW__ELEARN__*`` variables and airflow.cfg (its modification time and size) are as
    they were."""
    global _last
    home = elearn_home()
    path, stamp = _airflow_cfg(home)
    env = tuple(os.environ.get(var) for var in _VARIABLES)
    inputs = (home, path, stamp, env)
    last = _last
    if last is not None and last[0] == inputs:
        return last[1]
    cfg = _resolve(home, dict(zip(_NAMES, env)), _airflow_cfg_section(path, stamp))
    _last = (inputs, cfg)
    return cfg


def get(key: str):
    """The validated value of one key: ``getattr(load(), key)``."""
    if key not in KEYS:
        raise ConfigError(f"unknown elearn configuration key {key!r}; known keys: {', '.join(KEYS)}")
    return getattr(load(), key)

