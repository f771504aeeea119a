"""Campaigns: running scans and rescans around the store.

`scanrun` (a resumable scan around ScanJob), `runloop` (`pacswatch run`), `commands` (the `scan`
command's logic), `scope` (campaign scope and opt-outs), `report`. The pure decisions they rely
on (lifecycle, schedule, ingest, work) are in pacswatch.findings, below the store.
Submodules are imported where used, so that importing the package stays cheap.
"""
