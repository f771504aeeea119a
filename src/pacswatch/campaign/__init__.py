"""Campaigns: remembering what was seen, deciding what changed and when to look again.

Pure decisions: `lifecycle` (finding open/fixed/reopened, scan diffs), `schedule` (when a
service is due), `ingest` (what a batch of records writes), `work` (completed plan indexes).
With I/O: `scanrun` (a resumable scan around ScanJob), `runloop` (`pacswatch run`).
Submodules are imported where used, so that the pure ones stay cheap to import.
"""
