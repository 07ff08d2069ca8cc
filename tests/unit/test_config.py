import re

import pytest

from elearn import config
from elearn.errors import ConfigError


def test_defaults_are_rooted_at_elearn_home(elearn_home):
    cfg = config.load()
    assert cfg.home == elearn_home
    assert cfg.database_url == f"sqlite:///{elearn_home}/elearn.db"
    assert cfg.object_store == f"file://{elearn_home}/objectstore"
    assert cfg.spark_conn_id == "spark_default"
    assert cfg.catalog_properties["warehouse"] == f"file://{elearn_home}/objectstore/warehouse"


def test_environment_wins_over_airflow_cfg(elearn_home, monkeypatch):
    cfg_file = elearn_home / "airflow" / "airflow.cfg"
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text("[elearn]\nspark_conn_id = spark_cfg\nlocal_slots = 3\n")
    assert config.load().spark_conn_id == "spark_cfg"
    assert config.load().local_slots == 3
    monkeypatch.setenv("AIRFLOW__ELEARN__SPARK_CONN_ID", "spark_env")
    assert config.load().spark_conn_id == "spark_env"


def test_a_retired_key_stops_the_load_and_names_what_replaced_it(elearn_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ELEARN__SPARK_MASTER", "spark://env:7077")
    with pytest.raises(ConfigError, match=r"SPARK_MASTER .* no longer read: .*AIRFLOW_CONN_SPARK_DEFAULT"):
        config.load()
    monkeypatch.delenv("AIRFLOW__ELEARN__SPARK_MASTER")
    cfg_file = elearn_home / "airflow" / "airflow.cfg"
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text("[elearn]\nspark_master = spark://cfg:7077\n")
    with pytest.raises(ConfigError, match="spark_master in airflow.cfg"):
        config.load()


def test_bad_values_name_the_key(elearn_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ELEARN__OBJECT_STORE", "ftp://x")
    with pytest.raises(ConfigError, match="AIRFLOW__ELEARN__OBJECT_STORE"):
        config.load()
    monkeypatch.setenv("AIRFLOW__ELEARN__OBJECT_STORE", "file:///tmp/x")
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_SLOTS", "many")
    with pytest.raises(ConfigError, match="LOCAL_SLOTS='many' is not an integer"):
        config.load()
    with pytest.raises(ConfigError, match="unknown elearn configuration key 'nope'"):
        config.get("nope")


def test_an_edited_airflow_cfg_is_read_again(elearn_home):
    cfg_file = elearn_home / "airflow" / "airflow.cfg"
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text("[elearn]\nlocal_slots = 3\n")
    assert config.load().local_slots == 3
    import os

    cfg_file.write_text("[elearn]\nlocal_slots = 5\n")  # same size: the modification time tells
    os.utime(cfg_file, ns=(cfg_file.stat().st_atime_ns, cfg_file.stat().st_mtime_ns + 1_000_000))
    assert config.load().local_slots == 5
    cfg_file.write_text("[elearn]\nlocal_slots = 12\n")
    assert config.load().local_slots == 12
    cfg_file.unlink()
    assert config.load().local_slots == 4  # the default again


def test_each_key_is_one_field_with_its_default_written_once(elearn_home):
    from dataclasses import MISSING, fields

    assert {f.name for f in fields(config.ElearnConfig)} == {"home", *config.KEYS}
    assert all(f.default is MISSING and f.default_factory is MISSING  # no second default there
               for f in fields(config.ElearnConfig))
    cfg = config.load()
    assert (cfg.local_slots, cfg.local_gpus, cfg.proxy_port, cfg.team_quotas) == (4, None, 8700, {})
    assert cfg.staging_dir == elearn_home / "staging" and cfg.aws_conn_id == "aws_default"


def test_the_readme_table_shows_every_key_with_its_default():
    from testbed import REPO

    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", (REPO / "README.md").read_text(), re.M))
    for key, spec in config.KEYS.items():
        shown = rows[key].strip()
        if spec.default:
            assert shown == f"`{spec.default.format(home='$ELEARN_HOME')}`", key
        else:
            assert shown.startswith("(empty"), key


def test_load_is_reused_until_an_input_changes(elearn_home, monkeypatch):
    first = config.load()
    assert config.load() is first
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_SLOTS", "7")
    assert config.load().local_slots == 7
    monkeypatch.setenv("AIRFLOW__ELEARN__WORKER_SECRET", "")  # set empty: no Secret, not the default one
    assert config.load().worker_secret == ""
    monkeypatch.delenv("AIRFLOW__ELEARN__LOCAL_SLOTS")
    monkeypatch.delenv("AIRFLOW__ELEARN__WORKER_SECRET")
    assert config.load() == first
    monkeypatch.setenv("ELEARN_HOME", str(elearn_home / "other"))
    assert config.load().database_url == f"sqlite:///{elearn_home}/other/elearn.db"


@pytest.mark.parametrize("key, value, message", [
    ("LOCAL_GPUS", "lots", "AIRFLOW__ELEARN__LOCAL_GPUS='lots' must be a whole number or auto"),
    ("LOCAL_GPUS", "-1", "AIRFLOW__ELEARN__LOCAL_GPUS=-1 must be 0 or more"),
    ("COMPUTE_DRIVER", "k8s", "compute_driver 'k8s' is not one of local, kubernetes; set AIRFLOW__ELEARN__COMPUTE_DRIVER"),
    ("PROXY_PORT", "70000", "proxy_port 70000 is not a TCP port; set AIRFLOW__ELEARN__PROXY_PORT"),
    ("TEAM_QUOTAS", "[1]", "AIRFLOW__ELEARN__TEAM_QUOTAS must be a JSON object, got list"),
])
def test_bad_values_stop_the_load_naming_the_variable(elearn_home, monkeypatch, key, value, message):
    monkeypatch.setenv(f"AIRFLOW__ELEARN__{key}", value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load()


def test_keys_once_read_raw_now_go_through_validation(elearn_home, monkeypatch):
    """The slot pool, the driver choice and the database engine read the validated object: a bad
    value is a ConfigError naming the variable (once a ValueError, a silent fallback to the local
    driver, or SQLAlchemy's own error)."""
    from elearn.compute import get_driver
    from elearn.compute.local import host_pool
    from elearn.db.engine import get_engine

    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_SLOTS", "many")
    with pytest.raises(ConfigError, match="AIRFLOW__ELEARN__LOCAL_SLOTS='many' is not an integer"):
        host_pool()
    monkeypatch.delenv("AIRFLOW__ELEARN__LOCAL_SLOTS")
    monkeypatch.setenv("AIRFLOW__ELEARN__COMPUTE_DRIVER", "k8s")
    with pytest.raises(ConfigError, match="set AIRFLOW__ELEARN__COMPUTE_DRIVER"):
        get_driver()
    monkeypatch.delenv("AIRFLOW__ELEARN__COMPUTE_DRIVER")
    monkeypatch.setenv("AIRFLOW__ELEARN__DATABASE_URL", "secret-password@db.example")
    with pytest.raises(ConfigError, match="set AIRFLOW__ELEARN__DATABASE_URL") as e:
        get_engine()
    assert "secret-password" not in str(e.value)  # a URL may hold a password: never echoed
