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
