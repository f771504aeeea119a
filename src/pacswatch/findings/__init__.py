"""Findings: the pure decisions about what was seen, below the store that writes them.

`lifecycle` (finding open/fixed/reopened, scan diffs), `schedule` (when a service is due),
`ingest` (what a batch of records writes), `work` (completed plan indexes). No I/O here: the
store (store/repository.py) calls these and writes what they decide; campaign/ runs the scans.
"""
