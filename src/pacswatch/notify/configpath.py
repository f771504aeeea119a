"""Which notify configuration file a command reads: the one it was given (--config), else
$PACSWATCH_NOTIFY_CONFIG; None: none, so the defaults.

Apart from config.py, whose models import attribution, SMTP and the templates (~40 ms of a
command's start): a scan run without a configuration file asks only this, and so does not
import them before its first probe.
"""

from __future__ import annotations

import os

ENV = "PACSWATCH_NOTIFY_CONFIG"


def named(path: str | None = None) -> str | None:
    return path or os.environ.get(ENV) or None
