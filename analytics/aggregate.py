"""Roll-ups machine -> line -> factory -> district -> city, always sum/sum (DOMAIN rule 0).

Components are summed per group and ratios are recomputed from the sums; a mean of machine ratios
is never produced (the one defined mean-of-rates statistic lives in ``green.key_process_cnc_rate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from analytics.components import Components, group_index
from zhizao.site import SiteModel

__all__ = ["LEVELS", "Rollup", "machine_hierarchy", "rollup"]

LEVELS: tuple[str, ...] = ("machine", "line", "factory", "district", "city")

Rollup = dict[str, tuple[list[str], Components]]


def rollup(c: Components, groups: Mapping[str, Sequence[str]]) -> Rollup:
    """Per level: the group names and their summed components.

    ``groups[level][i]`` names the group of row ``i`` at that level (e.g. the line of a machine).
    Levels not given are skipped, except ``city`` which always sums everything.
    """
    out: Rollup = {}
    for level in LEVELS:
        if level == "city" and level not in groups:
            out["city"] = (["city"], c.total())
            continue
        if level not in groups:
            continue
        labels = list(groups[level])
        if len(labels) != len(c):
            raise ValueError(f"level {level!r} names {len(labels)} rows, components have {len(c)}")
        ids, names = group_index(labels)
        out[level] = ([str(n) for n in names], c.sum_by(ids, len(names)))
    return out


def machine_hierarchy(site: SiteModel, machines: Sequence[str]) -> dict[str, list[str]]:
    """Group labels of each machine id at every level, from the site model."""
    where = {m.id: (a, ln) for a, ln, m in site.machines()}
    factory = f"{site.enterprise}/{site.site}"
    return {
        "machine": [f"{factory}/{where[m][0].id}/{where[m][1].id}/{m}" for m in machines],
        "line": [f"{factory}/{where[m][0].id}/{where[m][1].id}" for m in machines],
        "factory": [factory for _ in machines],
        "district": [site.district or "(no district)" for _ in machines],
    }
