"""Which version answers: champion, canary challenger, rollback history. Pure Python.

The worker keeps one ``ModelTable``; promotions and rollbacks change it, every request asks
it for a version. ``wanted()`` tells the engine pool what must stay loaded, so the pool can
load a new version before the switch and retire an old one only when it is idle.

A version is a full model (an engine of its own) or a LoRA adapter on a full version's
engine (``base``): champion, challenger and history mix both freely, so a canary can split
traffic between two adapters, or between an adapter and its base, on one engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"


class UnknownVersionError(LookupError):
    """A rollback or promotion names a version this worker has no location for."""


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    location: str  # local directory (or hub id) the engine loads
    base: tuple[str, str] | None = None  # a LoRA adapter on this full version's engine

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    @property
    def is_adapter(self) -> bool:
        return self.base is not None


@dataclass
class Route:
    champion: Version
    challenger: Version | None = None
    share: float = 0.0
    history: list[Version] = field(default_factory=list)  # earlier champions, newest last


class ModelTable:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.known: dict[tuple[str, str], Version] = {}

    # -- reading ---------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.routes)

    def choose(self, name: str, draw: float) -> tuple[Version, str]:
        """The version for one request; ``draw`` is uniform in [0, 1)."""
        route = self.routes.get(name)
        if route is None:
            raise KeyError(name)
        if route.challenger is not None and draw < route.share:
            return route.challenger, CHALLENGER
        return route.champion, CHAMPION

    def wanted(self, keep_previous: bool = True) -> set[tuple[str, str]]:
        keys: set[tuple[str, str]] = set()
        for route in self.routes.values():
            keys.add(route.champion.key)
            if route.challenger is not None:
                keys.add(route.challenger.key)
            if keep_previous and route.history:
                keys.add(route.history[-1].key)
        # an adapter needs its base's engine: wanted too, even if no route serves it
        keys |= {v.base for k in keys if (v := self.known.get(k)) and v.base is not None}
        return keys

    def lookup(self, key: tuple[str, str]) -> Version | None:
        return self.known.get(key)

    def full_version(self, version: Version) -> Version:
        """The full model whose engine serves ``version`` (itself, or an adapter's base)."""
        if version.base is None:
            return version
        base = self.known.get(version.base)
        if base is None:
            raise UnknownVersionError(f"{version.name} {version.version}: base {version.base}")
        return base

    def served(self) -> list[tuple[Version, str, float]]:
        out: list[tuple[Version, str, float]] = []
        for name in self.names():
            route = self.routes[name]
            share = 1.0 - (route.share if route.challenger else 0.0)
            out.append((route.champion, CHAMPION, share))
            if route.challenger is not None:
                out.append((route.challenger, CHALLENGER, route.share))
        return out

    # -- changing --------------------------------------------------------------------
    def remember(self, version: Version) -> None:
        self.known[version.key] = version

    def promote(self, version: Version, alias: str = CHAMPION, share: float = 1.0) -> None:
        self.remember(version)
        route = self.routes.get(version.name)
        if route is None:
            self.routes[version.name] = Route(champion=version)
            return
        if alias == CHALLENGER:
            if version.key == route.champion.key:
                route.challenger, route.share = None, 0.0
            else:
                route.challenger, route.share = version, max(0.0, min(1.0, share))
            return
        if version.key != route.champion.key:
            route.history.append(route.champion)
        route.champion = version
        if route.challenger is not None and route.challenger.key == version.key:
            route.challenger, route.share = None, 0.0

    def rollback(self, name: str, to_version: str) -> Version:
        """Make ``to_version`` the champion again; the withdrawn one is not kept."""
        route = self.routes.get(name)
        target = self.known.get((name, to_version))
        if route is None or target is None:
            raise UnknownVersionError(f"{name} {to_version} was never served here")
        withdrawn = route.champion
        route.champion = target
        route.history = [v for v in route.history if v.key not in (target.key, withdrawn.key)]
        if route.challenger is not None and route.challenger.key == target.key:
            route.challenger, route.share = None, 0.0
        return target

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def dump(v: Version | None) -> dict[str, Any] | None:
            if v is None:
                return None
            out: dict[str, Any] = {"name": v.name, "version": v.version, "location": v.location}
            if v.base is not None:
                out["base"] = list(v.base)
            return out

        return {
            "known": [dump(v) for v in self.known.values()],
            "routes": {
                name: {
                    "champion": dump(r.champion),
                    "challenger": dump(r.challenger),
                    "share": r.share,
                    "history": [dump(v) for v in r.history],
                }
                for name, r in self.routes.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelTable:
        def load(item: dict[str, Any]) -> Version:
            base = item.get("base")
            return Version(
                item["name"],
                item["version"],
                item["location"],
                (base[0], base[1]) if base else None,
            )

        table = cls()
        for item in data.get("known", []):
            table.remember(load(item))
        for name, r in data.get("routes", {}).items():
            table.routes[name] = Route(
                champion=load(r["champion"]),
                challenger=load(r["challenger"]) if r.get("challenger") else None,
                share=float(r.get("share", 0.0)),
                history=[load(v) for v in r.get("history", [])],
            )
        return table
