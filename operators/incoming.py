"""IncomingDatastoreSensor: a complete Parquet folder dropped under a prefix → a new snapshot + an Asset event."""

from __future__ import annotations

import time
from datetime import timedelta

from airflow.sdk import BaseOperator


class IncomingDatastoreSensor(BaseOperator):
    """Wait for complete folders (``_SUCCESS`` or ``_manifest.json`` inside) directly under
    ``prefix`` of the object store and register each, in marker-time order, as a snapshot of
    ``datastore`` exactly once (``elearn.datastores.incoming``); a deferrable sensor.

    It looks once, then defers to ``IncomingFolderTrigger`` (every ``poll_interval_s``) until a
    folder comes or ``timeout_s`` passes; then the task is skipped (no event). A run that registers
    folders emits one event on the datastore's Asset: in ``outlets`` either ``datastore_asset(
    datastore)`` or an ``AssetAlias`` (for a datastore chosen by a param); its extra is the newest
    snapshot's (``datastore``, ``snapshot_id``, ``rows``, ``schema_hash``, ``source``) plus
    ``snapshots``, each snapshot of the run. A folder the datastore refuses fails the task with one
    line (folder, columns, fix) and is skipped by later runs until it changes. ``mode``:
    ``replace`` or ``append``, as for ``RegisterDatastoreOperator``.
    """

    template_fields = ("datastore", "prefix", "mode", "poll_interval_s", "timeout_s")
    ui_color = "#e6f1f2"  # Airflow's sensor colour

    def __init__(self, *, datastore: str, prefix: str, mode: str = "replace", allow_incompatible_schema: bool = False,
                 poll_interval_s: float | str = 30.0, timeout_s: float | str = 540.0, **kwargs):
        super().__init__(**kwargs)
        self.datastore, self.prefix, self.mode = datastore, prefix, mode
        self.allow_incompatible_schema = allow_incompatible_schema
        self.poll_interval_s, self.timeout_s = poll_interval_s, timeout_s

    def _by(self, context) -> str:
        return f"{self.dag_id}/{context['run_id']}/{self.task_id}"

    def _target(self):
        """The datastore's Asset, after checking that ``outlets`` can carry its event."""
        from airflow.sdk import Asset, AssetAlias

        from elearn.errors import InvalidInput
        from operators.assets import datastore_asset

        target = datastore_asset(self.datastore)
        for outlet in self.outlets:
            if isinstance(outlet, Asset) and outlet.name != target.name:
                raise InvalidInput(f"outlet {outlet.name} is not the Asset of datastore {self.datastore} "
                                   f"({target.name}); use datastore_asset({self.datastore!r}) or an AssetAlias")
        if not any(isinstance(o, (Asset, AssetAlias)) for o in self.outlets):
            raise InvalidInput(f"task {self.task_id} has no outlet for datastore {self.datastore}'s event; add "
                               f"outlets=[datastore_asset({self.datastore!r})] (or an AssetAlias)")
        return target

    def _register_pending(self, context, waited: bool):
        from airflow.sdk import Asset, AssetAlias
        from airflow.sdk.exceptions import AirflowSkipException

        from elearn.datastores.incoming import event_extra, find_pending, register_folders, rejection_key
        from elearn.objectstore import default_store
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        target = self._target()
        store, by = default_store(), self._by(context)
        pending = find_pending(self.datastore, store, self.prefix, by=by)
        self.log.info("%s: %s", store.uri(self.prefix.strip("/")), pending.summary())
        for folder, record in pending.rejected:
            self.log.warning("skipping %s: rejected at %s (%s); drop a corrected folder, or delete %s to try it "
                             "again", folder.uri, record.get("rejected_at"), record.get("reason"),
                             store.uri(rejection_key(self.datastore, folder.key)))
        if not pending.new:
            if waited:  # the trigger saw folders that another run registered meanwhile
                raise AirflowSkipException(f"nothing left to register under {self.prefix}: {pending.summary()}")
            return None
        made = register_folders(self.datastore, pending.new, store=store, by=by, mode=self.mode,
                                allow_incompatible=self.allow_incompatible_schema)
        if not made:
            raise AirflowSkipException(f"another run registered the folders under {self.prefix} first")
        extra = event_extra(made)
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                context["outlet_events"][outlet].add(target, extra=extra)
            elif isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = extra
        return {**extra, "registered": len(made)}

    def execute(self, context):
        from operators.incoming_triggers import IncomingFolderTrigger

        result = self._register_pending(context, waited=False)
        if result is not None:
            return result
        poll_s, timeout_s = float(self.poll_interval_s), float(self.timeout_s)
        self.defer(trigger=IncomingFolderTrigger(self.datastore, self.prefix, self._by(context),
                                                 deadline=time.time() + timeout_s, poll_s=poll_s),
                   method_name="execute_complete", timeout=timedelta(seconds=timeout_s + 2 * poll_s + 60))

    def execute_complete(self, context, event=None):
        from airflow.sdk.exceptions import AirflowSkipException

        from elearn.errors import ElearnError

        status = (event or {}).get("status")
        if status == "timeout":
            raise AirflowSkipException(f"no new complete folder under {self.prefix} within {self.timeout_s}s "
                                       f"({event.get('message')})")
        if status != "found":
            raise ElearnError(f"watching {self.prefix} for datastore {self.datastore} failed: "
                              f"{(event or {}).get('message', event)}")
        return self._register_pending(context, waited=True)
