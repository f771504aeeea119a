"""The DICOM probe: `probe.py` (the probe: one endpoint, its connections, TLS and the web
check), `steps.py` (what it does on one association and the decisions between associations),
`session.py` (one association as a conversation the connection drives), `request.py` (what it
sends, made once per scan)."""
