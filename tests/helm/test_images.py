"""images/: the Airflow+elearn image and the training-worker image (not built here: no Docker).

hadolint lints both; every path they copy exists in the build context (the repository root, less
.dockerignore); both install the project's own lock; the worker's subset of it covers what a worker
imports; both run as the non-root users the chart and the driver expect; the chart's defaults
name them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from elearn.compute.k8s_manifests import WORKER_UID
from testbed import REPO
from tests.helm.conftest import CHART

IMAGES = REPO / "images"
DOCKERFILES = {"airflow": IMAGES / "airflow" / "Dockerfile", "training-worker": IMAGES / "training-worker" / "Dockerfile",
               "notebook": IMAGES / "notebook" / "Dockerfile",  # the notebook image's own checks: test_notebook_image.py
               "spark-job": IMAGES / "spark-job" / "Dockerfile"}
WORKER_REQUIREMENTS = IMAGES / "training-worker" / "requirements.txt"
LOCK = REPO / "requirements.lock"
AIRFLOW_UID = 50000  # the airflow user of the apache/airflow images


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY/ADD from the build context (not from other stages)."""
    found = []
    for word, args in instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        parts = args.split()
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        found.append((paths[:-1], paths[-1]))
    return found


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: Docker's rules (a pattern matching a parent
    folder matches its contents, ``**`` spans folders, ``!`` re-includes, the last match wins)."""

    def regex(pattern: str) -> re.Pattern:
        parts = []
        for piece in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
            if piece in ("**", "**/"):
                parts.append("(?:.*/)?" if piece == "**/" else ".*")
            elif piece == "*":
                parts.append("[^/]*")
            elif piece == "?":
                parts.append("[^/]")
            else:
                parts.append(re.escape(piece))
        return re.compile("".join(parts) + "$")

    prefixes = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        if any(regex(pattern).match(p) for p in prefixes):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def context_files(source: str) -> list[str]:
    """Files under ``source`` the repository tracks (git), else every file there, __pycache__ aside."""
    out = subprocess.run(["git", "ls-files", "--", source], cwd=REPO, capture_output=True, text=True)
    files = out.stdout.split() if out.returncode == 0 else []
    if not files:
        root = REPO / source
        files = [str(p.relative_to(REPO)) for p in ([root] if root.is_file() else root.rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts]
    return files


# ---------------------------------------------------------------------------------------------- lint


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(hadolint, image):
    out = subprocess.run([str(hadolint), "--failure-threshold", "style", "--format", "json", str(DOCKERFILES[image])],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    findings = json.loads(out.stdout or "[]")
    assert out.returncode == 0 and findings == [], findings or out.stderr


def test_hadolint_is_not_vacuous(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\nRUN pip install requests\n")
    out = subprocess.run([str(hadolint), "--failure-threshold", "style", "--format", "json", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert {"DL3007", "DL3008", "DL3013"} <= {f["code"] for f in json.loads(out.stdout)}


def test_the_only_rule_waived_is_pinning_debian_packages():
    for image, path in DOCKERFILES.items():
        waived = re.findall(r"#\s*hadolint ignore=(\S+)", path.read_text())
        assert set(waived) <= {"DL3008"}, (image, waived)


# ---------------------------------------------------------------------------------------------- build context


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_every_path_copied_exists_in_the_build_context(image):
    patterns = dockerignore_patterns()
    found = copies(DOCKERFILES[image])
    assert found
    for sources, _destination in found:
        for source in sources:
            assert (REPO / source).exists(), f"{image}: COPY {source}: no such path in the repository"
            files = context_files(source)
            assert files, f"{image}: COPY {source} copies nothing"
            left_out = [f for f in files if dockerignored(f, patterns)]
            assert not left_out, f"{image}: .dockerignore leaves out what COPY {source} needs: {left_out[:5]}"


def test_dockerignore_keeps_the_rest_of_the_repository_out():
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".elearn/elearn.db", ".git/HEAD", "tests/conftest.py", "bench/bench_api.py",
                 "plugins/elearn/__pycache__/config.cpython-311.pyc", "helm/elearn/values.yaml"):
        assert dockerignored(path, patterns), path
    for path in ("plugins/elearn/config.py", "dags/nightly_retraining.py", "requirements.lock"):
        assert not dockerignored(path, patterns), path


# ---------------------------------------------------------------------------------------------- what they install


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def runs(image: str) -> str:
    return "\n".join(args for word, args in instructions(DOCKERFILES[image]) if word == "RUN")


def test_airflow_image_installs_the_whole_lock_then_elearn():
    text = runs("airflow")
    assert re.search(r"pip install --no-cache-dir -r /opt/elearn/requirements\.lock", text)
    assert re.search(r"pip install --no-cache-dir --no-deps /opt/elearn", text) and "pip check" in text
    assert (["requirements.lock"], "/opt/elearn/requirements.lock") in copies(DOCKERFILES["airflow"])
    assert (["dags"], "/opt/airflow/dags") in copies(DOCKERFILES["airflow"])


def test_base_images_match_the_lock():
    pins = lock_pins()
    froms = {image: [args for word, args in instructions(path) if word == "FROM"] for image, path in DOCKERFILES.items()}
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert froms["airflow"] == [f"apache/airflow:slim-{pins['apache-airflow']}-{py}"]
    assert froms["training-worker"] == [f"tensorflow/tensorflow:{pins['tensorflow']}-gpu"]
    assert froms["spark-job"] == [f"apache/spark:{pins['pyspark']}-scala2.13-java17-python3-ubuntu"]


def test_spark_image_carries_the_hadoop_aws_of_sparks_own_hadoop_and_the_jobs():
    import pyspark

    from elearn.spark_submit import IMAGE_JOBS_DIR

    jar = next((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")).name
    args = dict(a.split("=", 1) for word, a in instructions(DOCKERFILES["spark-job"]) if word == "ARG" and "=" in a)
    assert args["HADOOP_VERSION"] == jar[len("hadoop-client-api-"):-len(".jar")]
    assert (["spark_jobs"], f"{IMAGE_JOBS_DIR}/spark_jobs") in copies(DOCKERFILES["spark-job"])


def test_worker_image_installs_its_subset_at_the_lock_versions():
    text = runs("training-worker")
    assert re.search(r"pip install --no-cache-dir -c /opt/elearn/requirements\.lock "
                     r"-r /opt/elearn/worker-requirements\.txt", text)
    pins = lock_pins()
    for req in worker_requirements():
        assert canonicalize_name(req.name) in pins, f"{req.name} is not in requirements.lock"
    for extra_name in ("psycopg2-binary", "sqlalchemy"):  # reached through pyiceberg's extras
        assert extra_name in closure(worker_requirements())


def worker_requirements() -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in WORKER_REQUIREMENTS.read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution the requirements pull in, from the installed metadata."""
    seen, todo = set(), [(r.name, frozenset(r.extras)) for r in requirements]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({**default_environment(), "extra": e})
                                      for e in (extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


def module_level(tree: ast.Module):
    """Nodes outside function bodies: what runs when the module is imported."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def worker_imports() -> set[str]:
    """Top-level third-party modules a worker may import: every import (function-level too) of
    training_jobs/ and of the elearn modules it loads. elearn modules are followed through
    training_jobs' imports and through their own module-level imports (with the packages on the
    way); an elearn function's lazy import of another elearn module (``get_driver`` loading the
    kubernetes driver, say) is not a worker's."""
    third, seen = set(), set()
    todo = [(p, True) for p in (REPO / "training_jobs").glob("*.py")]
    while todo:
        path, entry = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text())
        followed = set(ast.walk(tree)) if entry else set(module_level(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ("elearn", "training_jobs"):
                    if node not in followed:
                        continue
                    root = REPO / "plugins" if top == "elearn" else REPO
                    parts = name.split(".")
                    for i in range(1, len(parts) + 1):  # the packages on the way are imported too
                        base = root.joinpath(*parts[:i])
                        for candidate in (base / "__init__.py", base.with_suffix(".py")):
                            if candidate.is_file():
                                todo.append((candidate, top == "training_jobs"))
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third.add(top)
    return third


def test_worker_subset_covers_what_a_worker_imports():
    imported = worker_imports()
    assert {"tensorflow", "numpy", "pyiceberg"} <= imported  # the walk found the worker's real imports
    assert "airflow" not in imported and "pyspark" not in imported and "bentoml" not in imported
    providers = metadata.packages_distributions()
    installed = closure(worker_requirements())
    missing = {module: providers.get(module) for module in imported
               if not {canonicalize_name(d) for d in providers.get(module, [module])} & installed}
    assert not missing, f"add to {WORKER_REQUIREMENTS.relative_to(REPO)}: {missing}"


# ---------------------------------------------------------------------------------------------- users, defaults


def final_user(image: str) -> str:
    return [args for word, args in instructions(DOCKERFILES[image]) if word == "USER"][-1]


def test_images_run_as_the_non_root_users_the_pods_expect():
    assert final_user("training-worker") == f"{WORKER_UID}:{WORKER_UID}"  # the driver's runAsUser
    assert final_user("airflow") == str(AIRFLOW_UID)
    assert re.search(rf"useradd --uid {WORKER_UID} --gid {WORKER_UID}", runs("training-worker"))


def test_chart_defaults_name_the_images_built_here():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["images"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert app_version == metadata.version("elearn")
    for key, image in (("airflow", "airflow"), ("trainingWorker", "training-worker")):
        tag = f"{values[key]['repository']}:{app_version}"
        assert f"docker build -f images/{image}/Dockerfile -t {tag} ." in DOCKERFILES[image].read_text()
    from elearn.config import KEYS

    assert KEYS["worker_image"][0].split(":")[0] == values["trainingWorker"]["repository"]
    spark_image = KEYS["spark_image"][0].split(":")[0]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["config"]["spark_image"].split(":")[0] == spark_image
    assert f"docker build -f images/spark-job/Dockerfile -t {spark_image}:" in DOCKERFILES["spark-job"].read_text()


def test_worker_image_runs_training_jobs_as_modules():
    words = dict((w, a) for w, a in instructions(DOCKERFILES["training-worker"]) if w in ("ENTRYPOINT", "CMD"))
    assert json.loads(words["ENTRYPOINT"]) == ["python", "-m"]
    assert json.loads(words["CMD"])[0].startswith("training_jobs.")
    assert importlib.util.find_spec(json.loads(words["CMD"])[0]) is not None
