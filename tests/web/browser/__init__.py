"""The dashboard's browser tests: a package, so that this directory's conftest.py is imported as
browser.conftest and never takes the name `conftest` that tests/web/*.py import their helpers from."""
