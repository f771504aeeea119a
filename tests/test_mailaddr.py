"""The e-mail address check is a leaf both attribution and notify use (docs/design.md, package
direction): attribution must not import notify to check a contact it found."""

import ast
from pathlib import Path

import pytest

import pacswatch
from pacswatch.mailaddr import AddressError, addr_spec

SRC = Path(pacswatch.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_attribution_does_not_import_notify():
    offenders = {
        f"{path.relative_to(SRC)}: {module}"
        for path in (SRC / "attribution").glob("*.py")
        for module in _imported_modules(path)
        if module.startswith("pacswatch.notify")
    }
    assert offenders == set()


def test_mailaddr_imports_only_leaves():
    ours = {m for m in _imported_modules(SRC / "mailaddr.py") if m.startswith("pacswatch")}
    assert ours == {"pacswatch.text"}


@pytest.mark.parametrize("text", ["a@x.example, b@y.example", "a@x.example\r\nBcc: c@y.example", "Name <a@x.example>"])
def test_more_or_less_than_one_plain_address_is_refused(text):
    with pytest.raises(AddressError):
        addr_spec(text)
