"""What ``bentoml containerize`` builds for a version's Bento, told on a machine without Docker.

``container_build`` finds the version's Bento in elearn's BentoML store and writes the
Dockerfile ``bentoml containerize`` would build from (``bentoml.container.get_containerfile``:
the Bento's own ``env/docker/Dockerfile`` with BuildKit's cache mounts), in a child process so
that ``BENTOML_HOME`` is elearn's before BentoML is imported. ``bentoml containerize`` assembles
its build context itself: a copy of the Bento's folder with its models under ``models/``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from elearn import config
from elearn.errors import Conflict, ElearnError
from elearn.serving.k8s_manifests import bento_image


@dataclass(frozen=True)
class ContainerBuild:
    model_name: str
    version: int
    bento_tag: str
    bentoml_home: Path
    dockerfile: Path  # the one generated here
    image: str        # what the image is tagged (and pushed) as

    @property
    def bento_path(self) -> Path:
        name, _, version = self.bento_tag.partition(":")
        return self.bentoml_home / "bentos" / name / version

    @property
    def bentofile(self) -> Path:
        """The bentofile.yaml the Bento was built from (BentoML keeps a copy under ``src/``)."""
        return self.bento_path / "src" / "bentofile.yaml"

    @property
    def containerize_command(self) -> str:
        tag = [] if self.image == self.bento_tag else ["--image-tag", self.image]
        return shlex.join(["env", f"BENTOML_HOME={self.bentoml_home}", "bentoml", "containerize", self.bento_tag, *tag])

    def as_dict(self) -> dict:
        return {"model": self.model_name, "version": self.version, "bento_tag": self.bento_tag,
                "bento_path": str(self.bento_path), "bento_yaml": str(self.bento_path / "bento.yaml"),
                "bentofile": str(self.bentofile), "dockerfile": str(self.dockerfile), "image": self.image,
                "containerize": self.containerize_command}


def container_build(model_name: str, version: int, dockerfile: Path | None = None) -> ContainerBuild:
    """Describe the image build of a version's Bento and write its Dockerfile to ``dockerfile``
    (default ``$ELEARN_HOME/containerfiles/<bento name>-<version>.Dockerfile``).

    ``NotFound`` if there is no such version; ``Conflict`` if it has no Bento in this machine's store."""
    from elearn.registry import get_store
    from elearn.serving.bentos import bento_env, bento_exists

    cfg = config.load()
    mv = get_store().get_version(model_name, version)
    if not mv.bento_tag or not bento_exists(mv.bento_tag):
        raise Conflict(f"{model_name} v{version} has no Bento in this machine's store ({cfg.bentoml_home}); "
                       f"run the package task for it")
    name, _, tag_version = mv.bento_tag.partition(":")
    dockerfile = (dockerfile or cfg.home / "containerfiles" / f"{name}-{tag_version}.Dockerfile").absolute()
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    partial = dockerfile.with_name(dockerfile.name + ".partial")
    proc = subprocess.run([sys.executable, "-m", "elearn.serving.container", mv.bento_tag, str(partial)],
                          env=bento_env(), capture_output=True, text=True)
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise ElearnError(f"generating the Dockerfile of Bento {mv.bento_tag} failed (exit {proc.returncode}):\n"
                          + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:]))
    os.replace(partial, dockerfile)
    # the name the kubernetes serving backend runs the version's image by
    image = bento_image(mv.bento_tag, cfg.bento_image_registry)
    return ContainerBuild(model_name, version, mv.bento_tag, cfg.bentoml_home, dockerfile, image)


def main(argv=None) -> int:
    bento_tag, output = argv if argv is not None else sys.argv[1:]
    import bentoml

    bentoml.container.get_containerfile(bento_tag, output_path=output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
