"""The DICOM probe: `probe.py` (the probe, one endpoint), `session.py` (one association as a
conversation the connection drives), `request.py` (the A-ASSOCIATE-RQ, encoded once per scan)."""
