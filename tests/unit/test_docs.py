"""The README documents every setting the server reads."""

from __future__ import annotations

import re
from pathlib import Path

from dataagent.entrypoints.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_variables() -> set[str]:
    names: set[str] = set()
    for row in re.findall(r"^\| `(DATAAGENT_[A-Z0-9_]+)`([^|]*)\|", README.read_text(), re.MULTILINE):
        first, rest = row
        names.add(first)
        # `DATAAGENT_MYSQL_POOL_SIZE` / `_MAX_OVERFLOW`: a suffix replaces as many trailing words as it has
        parts = first.split("_")
        for suffix in re.findall(r"`(_[A-Z0-9_]+)`", rest):
            names.add("_".join(parts[: -len(suffix.strip("_").split("_"))]) + suffix)
    return names


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    missing = sorted(expected - documented_variables())
    assert not missing, f"settings missing from the README table: {missing}"


ROOT = README.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
NAMED_FILE = re.compile(r"`?([\w./-]+\.(?:md|py|ya?ml|toml|json))`? beside this file")


def test_every_relative_link_and_file_said_to_be_beside_a_doc_exists() -> None:
    broken = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        targets = [t for t in LINK.findall(text) if not re.match(r"^(https?:|mailto:|#)", t)]
        targets += NAMED_FILE.findall(text)
        for target in targets:
            if not (doc.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken
