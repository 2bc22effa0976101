"""The documents' code imports what exists: a renamed module or name breaks this, not a user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/CONTRACTS.md")


def _import_lines(document: str) -> list[str]:
    """Every ``import`` / ``from ... import`` line of the document's ```python blocks."""
    text = (ROOT / document).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if re.match(r"(import|from) \w", line)]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documented_imports_exist(document):
    lines = _import_lines(document)
    assert lines, f"{document} shows no imports; the pattern no longer finds its code blocks"
    for line in lines:
        try:
            exec(line, {})
        except ImportError as error:
            raise AssertionError(f"{document}: `{line}` fails: {error}") from error
