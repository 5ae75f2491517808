"""The README's configuration tables name every key of the key table, each in the right one.

Every key `fastreg/config/keys.py` declares (and every storage driver's own table) must appear in
the README: a key fastreg acts on in the first table, a key it only knows (`unsupported`, loading
warns "not supported yet") in the second, with why. A key added to the table without a line in the
README, or one whose support changed, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastreg.config.keys import ROOT, Key, Kind
from fastreg.storage.factory import DRIVERS, parameters_module

README = Path(__file__).resolve().parents[2] / "README.md"
ACTED_ON = "<!-- keys: acted on -->"
NOT_ACTED_ON = "<!-- keys: not acted on -->"
# Keys the table accepts without a warning although fastreg does nothing with them; the README
# says so in the second table. Each is a finding to fix (act on it, or mark it `unsupported`).
ACCEPTED_NOT_ACTED_ON = frozenset(
    {"http.prefix", "http.draintimeout", "http.secret", "http.tls.clientcas",
     "http.tls.minimumtls", "http.tls.ciphersuites"}
)
# `s3aws` is the s3 driver under Distribution's other name; the README names it in the s3 row.
ALIASES = frozenset({"s3aws"})


def keys_of(node: Key, path: str, supported: bool = True) -> dict[str, bool]:
    """Every key below ``node``: dotted path -> whether fastreg supports it (list entries `[]`)."""
    supported = supported and node.supported
    if node.kind is Kind.STRUCT and node.fields:
        found: dict[str, bool] = {}
        for name, child in node.fields.items():
            found.update(keys_of(child, f"{path}.{name}" if path else name, supported))
        return found
    if node.kind is Kind.LIST and node.item is not None and node.item.kind is Kind.STRUCT:
        return keys_of(node.item, f"{path}[]", supported)
    return {path: supported}


def all_keys() -> dict[str, bool]:
    found = keys_of(ROOT, "")
    for driver in DRIVERS:
        module = parameters_module(driver)
        if driver in ALIASES or module is None:
            continue
        found.update(keys_of(module.KEYS, f"storage.{driver}") or {f"storage.{driver}": True})
    return found


def expand(text: str) -> set[str]:
    """`a.{b, c}.d` -> {a.b.d, a.c.d}; one brace group per name."""
    match = re.search(r"\{([^}]*)\}", text)
    if match is None:
        return {text.split(":", 1)[0].strip()}
    return {
        name
        for part in match.group(1).split(",")
        for name in expand(text[: match.start()] + part.strip() + text[match.end() :])
    }


def table_keys(marker: str) -> set[str]:
    """The keys named in the first column of the table after ``marker``."""
    lines = README.read_text().split(marker, 1)[1].lstrip().splitlines()
    keys: set[str] = set()
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        first = re.split(r"(?<!\\)\|", line)[1]
        for span in re.findall(r"`([^`]+)`", first):
            keys |= expand(span.replace("\\|", "|"))
    return keys


def test_the_two_tables_exist() -> None:
    assert table_keys(ACTED_ON) and table_keys(NOT_ACTED_ON)


def test_every_key_fastreg_acts_on_is_in_the_first_table() -> None:
    acted_on = table_keys(ACTED_ON)
    wanted = {k for k, ok in all_keys().items() if ok and k not in ACCEPTED_NOT_ACTED_ON}
    assert sorted(wanted - acted_on) == []


def test_every_key_fastreg_does_not_act_on_is_in_the_second_table_with_why() -> None:
    not_acted_on = table_keys(NOT_ACTED_ON)
    wanted = {k for k, ok in all_keys().items() if not ok} | ACCEPTED_NOT_ACTED_ON
    assert sorted(wanted - not_acted_on) == []


def test_no_key_is_in_both_tables() -> None:
    assert sorted(table_keys(ACTED_ON) & table_keys(NOT_ACTED_ON)) == []


def test_a_key_added_to_the_table_fails_here() -> None:
    """The check itself: a key the README does not name is reported."""
    from dataclasses import replace
    from types import MappingProxyType

    extra = replace(ROOT, fields=MappingProxyType({**ROOT.fields, "brandnew": Key(Kind.BOOL)}))
    assert "brandnew" in keys_of(extra, "")
    assert "brandnew" not in table_keys(ACTED_ON)
