"""Tool and argument names: valid, unique and stable, whatever the document calls things.

MCP allows tool names of 1-128 characters from [A-Za-z0-9_.-]. The model APIs that
agents pass tools on to are stricter (64 characters, no dot), so names here keep to
[A-Za-z0-9_-]{1,64}: valid everywhere. Argument names keep to the same rule.

The scheme, decided by the document alone (same document, same names):

1. a name that already follows the rule and is unique is kept as it is;
2. otherwise each run of other characters becomes `_` (`repos/get` -> `repos_get`),
   kept if unique among all candidates and short enough;
3. otherwise (too long, or a collision) the candidate is cut and given a suffix from
   the SHA-256 of the thing's identity (for an operation, `METHOD /path`, which no
   other operation shares): `<first 55 characters>_<8 hex digits>`.

A name that follows the rule as given always wins over one made to follow it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

MAX_LENGTH = 64
VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OTHER = re.compile(r"[^A-Za-z0-9_-]+")
_HASH_DIGITS = 8


@dataclass(frozen=True)
class Wanted:
    """A name a thing would like (`preferred`, then `fallback`), and what tells it apart (`identity`)."""

    preferred: str
    identity: str
    fallback: str | None = None


def sanitize(text: str) -> str:
    return _OTHER.sub("_", text) or "_"


def hashed(candidate: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:_HASH_DIGITS]
    return f"{candidate[: MAX_LENGTH - _HASH_DIGITS - 1]}_{digest}"


def assign(wanted: Sequence[Wanted]) -> list[str]:
    """One name per entry, in order; unique, each matching VALID.

    Raises ValueError naming the identities in the (practically impossible) case of
    two hashed names colliding.
    """
    clean = [VALID.fullmatch(w.preferred) is not None for w in wanted]
    first = [w.preferred if ok else sanitize(w.preferred) for w, ok in zip(wanted, clean)]
    taken_clean: dict[str, int] = {}
    counts: dict[str, int] = {}
    for name, ok in zip(first, clean):
        counts[name] = counts.get(name, 0) + 1
        if ok:
            taken_clean[name] = taken_clean.get(name, 0) + 1

    names: list[str] = []
    for w, name, ok in zip(wanted, first, clean):
        if ok and taken_clean[name] == 1:
            names.append(name)  # rule 1: a clean name unique among clean ones wins
        elif not ok and counts[name] == 1 and len(name) <= MAX_LENGTH:
            names.append(name)  # rule 2
        else:
            names.append(None)  # type: ignore[arg-type]

    used = {n for n in names if n is not None}
    for i, (w, name) in enumerate(zip(wanted, names)):
        if name is not None:
            continue
        if w.fallback is not None:
            fallback = sanitize(w.fallback)
            if len(fallback) <= MAX_LENGTH and fallback not in used and fallback not in counts:
                names[i] = fallback
                used.add(fallback)
                continue
        candidate = hashed(first[i], w.identity)
        if candidate in used:
            raise ValueError(f"{w.identity!r}: its name {candidate!r} is taken")
        names[i] = candidate
        used.add(candidate)
    return names
