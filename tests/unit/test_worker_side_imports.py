"""Gang workers, Bentos and the CLI never import Airflow (DESIGN.md, Configuration)."""

import subprocess
import sys

import pytest

from testbed import REPO

CODE = """
import sys
sys.modules["airflow"] = None  # any `import airflow` now raises ImportError
import {module}
print("ok")
"""


@pytest.mark.parametrize("module", ["training_jobs.train_flights", "elearn.features.flights", "elearn.compute.worker",
                                    "elearn.cli", "elearn.demo", "elearn.registry", "elearn.datastores",
                                    "elearn.serving.package", "elearn.serving.process"])
def test_imports_without_airflow(module):
    out = subprocess.run([sys.executable, "-c", CODE.format(module=module)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_operator_modules_do_not_import_tensorflow_or_pyspark():
    code = ("import sys, operators, dags.nightly_retraining\n"
            "print(sorted(m for m in ('tensorflow', 'pyspark', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
