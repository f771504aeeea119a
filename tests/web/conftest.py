"""The dashboard tests' fixtures. They live in web_support.py, which the tests import their
helpers from by that name: a module named `conftest` is whichever directory's conftest pytest
loaded last, so `from web_support import ...` breaks when several test directories run together."""

from web_support import *  # noqa: F401,F403
