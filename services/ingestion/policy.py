"""Which sources an ingest request may name: the source policy.

Anyone who can publish an ``IngestRequested`` chooses what this service reads, so it reads
only what the operator allowed: local paths under the allowed roots (symlinks and ``..``
resolved first), never inside the data dir except its ``inbox/`` (the data dir holds the
admin key, signing keys, databases, artifacts), and URLs only of the allowed schemes.
A refusal names the rule, never whether the path exists (the check does not look).

A hard link is another name of the same file: one placed under a root for a file outside
(the admin key, say) resolves to itself, so the path rules above cannot see it. A regular
file with more than one link is therefore refused, unless ``allow_hard_links``
(``LLMOPS_INGESTION_ALLOW_HARD_LINKS``). This looks at the file (``stat``) only once its
path passed the rules above, and a path that cannot be looked at is not refused here (it
fails when read, like any missing file under a root), so the refusal says nothing about
anything outside the roots.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from fsspec.core import split_protocol

LOCAL_SCHEMES = frozenset({"file", "local"})
GLOB_CHARS = frozenset("*?[")
_USERINFO = re.compile(r"//[^/@]*@")


class SourceDeniedError(Exception):
    """A source (or a file it expands to) is outside the source policy."""

    def __init__(self, source: str, rule: str) -> None:
        super().__init__(f"source {source} is not allowed: {rule}")
        self.source = source
        self.rule = rule


def redact(uri: str) -> str:
    """A source for reports and audit: no user:password, no query (presigned signatures)."""
    protocol, _ = split_protocol(uri)
    if protocol is None or protocol in LOCAL_SCHEMES:
        return uri[:500]
    without_query = re.split(r"[?#]", uri, maxsplit=1)[0]
    return _USERINFO.sub("//", without_query)[:500]


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class SourcePolicy:
    roots: tuple[Path, ...]
    schemes: frozenset[str]
    data_dir: Path
    inbox: Path
    allow_hard_links: bool = False

    @classmethod
    def of(
        cls,
        roots: Iterable[Path],
        schemes: Collection[str],
        data_dir: Path,
        inbox: Path,
        *,
        allow_hard_links: bool = False,
    ) -> SourcePolicy:
        return cls(
            roots=tuple(Path(os.path.realpath(r)) for r in (inbox, *roots)),
            schemes=frozenset(s.lower() for s in schemes),
            data_dir=Path(os.path.realpath(data_dir)),
            inbox=Path(os.path.realpath(inbox)),
            allow_hard_links=allow_hard_links,
        )

    def check(self, uri: str) -> None:
        """Raise ``SourceDeniedError`` unless the source as given is allowed."""
        if "::" in uri:
            raise SourceDeniedError(redact(uri), "chained fsspec URLs are not accepted")
        protocol, path = split_protocol(uri)
        if protocol is None or protocol in LOCAL_SCHEMES:
            self.check_local(_static_prefix(path), shown=uri)
        elif protocol.lower() not in self.schemes:
            raise SourceDeniedError(
                redact(uri),
                f"the {protocol}:// scheme is not allowed (LLMOPS_INGESTION_ALLOWED_SCHEMES)",
            )

    def check_local(self, path: str, *, shown: str | None = None) -> None:
        """Raise unless ``path`` (resolved: symlinks, ``..``) is under an allowed root and
        not in the data dir outside its inbox, and (unless hard links are allowed) is not a
        regular file with several hard links. Looks at nothing on disk but the links, and,
        for a path the rules allow, the file's link count."""
        resolved = Path(os.path.realpath(os.path.abspath(path)))
        inside_roots = any(_within(resolved, root) for root in self.roots)
        in_data_dir = _within(resolved, self.data_dir) and not _within(resolved, self.inbox)
        if not inside_roots or in_data_dir:
            raise SourceDeniedError(
                redact(shown or path),
                "local sources must be under LLMOPS_INGESTION_ALLOWED_ROOTS or <data_dir>/inbox, "
                "and never elsewhere in the data dir",
            )
        if not self.allow_hard_links and _hard_linked(resolved):
            raise SourceDeniedError(
                redact(shown or path),
                "local source files must not have several hard links (a hard link can name a "
                "file outside the roots); LLMOPS_INGESTION_ALLOW_HARD_LINKS=true allows them",
            )

    def describe(self) -> dict[str, object]:
        return {
            "roots": [str(r) for r in self.roots],
            "schemes": sorted(self.schemes),
            "data_dir_denied": str(self.data_dir),
            "hard_links_allowed": self.allow_hard_links,
        }


def _hard_linked(path: Path) -> bool:
    """Whether ``path`` is a regular file with more than one hard link (False when it
    cannot be looked at: reading it fails later, as for any missing file)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink > 1


def _static_prefix(path: str) -> str:
    """The part of a glob pattern before its first wildcard component (the pattern's root)."""
    parts = Path(path).parts
    for index, part in enumerate(parts):
        if GLOB_CHARS & set(part):
            return str(Path(*parts[:index])) if index else "."
    return path
