"""The LICENSE file is the licence pyproject declares, whole: the Apache License 2.0 text as the
ASF publishes it (its nine sections, the end of terms and the appendix), which setuptools ships
in the wheel and sdist (PEP 639 `license-files` defaults to LICENSE*)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_license_file_is_the_full_apache_2_text() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    sections = [f"{n}. " for n in range(1, 10)]
    titles = ["Definitions.", "Grant of Copyright License.", "Grant of Patent License.",
              "Redistribution.", "Submission of Contributions.", "Trademarks.",
              "Disclaimer of Warranty.", "Limitation of Liability.",
              "Accepting Warranty or Additional Liability."]
    for number, title in zip(sections, titles, strict=True):
        assert f"{number}{title}" in text, title
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert "http://www.apache.org/licenses/LICENSE-2.0" in text
    assert len(text.split()) > 1500  # the whole text, not a summary or a pointer to it
