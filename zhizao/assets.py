"""ISA-95 asset paths: ``enterprise/site/area/line/cell/machine`` (levels below site optional)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from zhizao.errors import ConfigError

__all__ = ["LEVELS", "AssetPath", "AssetSpec", "resolve_asset"]

LEVELS: tuple[str, ...] = ("enterprise", "site", "area", "line", "cell", "machine")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True)
class AssetPath:
    """A validated ISA-95 path. ``enterprise`` and ``site`` are required."""

    enterprise: str
    site: str
    area: str | None = None
    line: str | None = None
    cell: str | None = None
    machine: str | None = None

    def __post_init__(self) -> None:
        seen_gap = False
        for level in LEVELS:
            value = getattr(self, level)
            if value is None:
                if level in ("enterprise", "site"):
                    raise ConfigError(f"asset path needs a {level}", key=level, expected="a name")
                seen_gap = True
                continue
            if seen_gap and level != "machine":
                # machine may hang directly under a line or area (no cell), but an area cannot be
                # skipped under a line: the tags would become ambiguous.
                raise ConfigError(
                    f"asset path level {level!r} set below a missing level",
                    key=level,
                    expected="levels filled from the top",
                )
            if not _SEGMENT.match(value):
                raise ConfigError(
                    f"invalid asset path segment {value!r}",
                    key=level,
                    expected="letters, digits, '_', '-', '.', starting with a letter or digit",
                )

    @classmethod
    def parse(cls, text: str) -> AssetPath:
        """Parse a path of 2 to 6 levels. Up to 4 levels fill enterprise/site/area/line; a 5th is
        the machine (cells are the rare optional level); 6 levels fill every level."""
        parts = [p for p in text.strip("/").split("/") if p]
        if not 2 <= len(parts) <= len(LEVELS):
            raise ConfigError(
                f"asset path {text!r} has {len(parts)} levels",
                expected="2 to 6 levels: enterprise/site[/area[/line[/cell]/machine]]",
            )
        if len(parts) == 5:
            enterprise, site, area, line, machine = parts
            return cls(enterprise, site, area, line, None, machine)
        return cls(**dict(zip(LEVELS, parts, strict=False)))

    def __str__(self) -> str:
        return "/".join(v for v in (getattr(self, lvl) for lvl in LEVELS) if v is not None)

    def tags(self) -> dict[str, str]:
        """InfluxDB tags for this asset (``cell`` is folded into nothing: it is not a tag)."""
        out = {"enterprise": self.enterprise, "site": self.site}
        for level in ("area", "line", "machine"):
            value = getattr(self, level)
            if value is not None:
                out[level] = value
        return out

    def child(self, level: str, name: str) -> AssetPath:
        """A copy with one more level set."""
        values = {lvl: getattr(self, lvl) for lvl in LEVELS}
        values[level] = name
        return AssetPath(**values)


# an asset in a configuration file: a positional path, or a mapping of levels
AssetSpec = str | dict[str, str]


def resolve_asset(spec: AssetSpec, enterprise: str | None, site: str | None) -> AssetPath:
    """An asset from config: a positional path ``enterprise/site/area/line/cell/machine`` or a
    mapping of levels (``{area: hall1, line: line1, machine: cnc-01}``) where enterprise and site
    default to the given ones. The mapping form lets a machine hang directly under a line."""
    if isinstance(spec, str):
        return AssetPath.parse(spec)
    levels: dict[str, str | None] = {"enterprise": enterprise, "site": site, **spec}
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ConfigError(
            f"unknown asset level(s) {sorted(unknown)}", expected=f"levels {', '.join(LEVELS)}"
        )
    return AssetPath(**levels)  # type: ignore[arg-type]  # a missing level is refused there
