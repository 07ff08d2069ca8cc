"""BuildBentoOperator: a Bento for one registry version."""

from __future__ import annotations

from airflow.sdk import BaseOperator


class BuildBentoOperator(BaseOperator):
    template_fields = ("model_version",)

    def __init__(self, *, model_version, service: str = "flight_delay", **kwargs):
        super().__init__(**kwargs)
        self.model_version = model_version
        self.service = service

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.serving.package import package_version

        mv = self.model_version
        tag = package_version(mv["model_name"], int(mv["version"]), self.service, on_line=self.log.info)
        return {"model_name": mv["model_name"], "version": mv["version"], "bento_tag": tag}
