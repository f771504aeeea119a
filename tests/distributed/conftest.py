"""The distributed tests' fixtures. They live in distributed_support.py, which the tests import
their helpers from by that name (see tests/web/conftest.py for why not `from conftest`)."""

from distributed_support import *  # noqa: F401,F403
