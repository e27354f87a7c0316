"""The solution's fixed PoP tables and the validation of target_type and its list.

The tables are copied from the deployed code (``api_post_prewarm``, identical in the 2023
scheduler): the server looks keys up in them and crashes (HTTP 502) on an unknown one, so the
client checks first. They are 2023 snapshots; PoP codes change without notice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from prewarm_cli.errors import ConfigError

__all__ = [
    "CHINA_POPS",
    "COUNTRY_POPS",
    "REGION_POPS",
    "TARGET_LIST_KEYS",
    "Target",
    "known_pops",
    "resolve_target",
]

REGION_POPS: dict[str, tuple[str, ...]] = {
    "apac": (
        "BOM51-C1",
        "BOM52-C1",
        "ICN51-C1",
        "ICN54-C2",
        "NRT51-P2",
        "NRT57-P3",
        "SIN2-P1",
        "SIN52-C2",
    ),
    "au": ("SYD1-C1", "SYD62-P1"),
    "ca": ("YUL62-C2", "YUL62-C1"),
    "eu": (
        "ARN56-P1",
        "ARN54-C1",
        "CDG50-P1",
        "CDG52-P2",
        "DUB2-C1",
        "DUB56-P1",
        "FRA56-P4",
        "FRA60-P1",
        "LHR61-P3",
        "LHR50-P2",
    ),
    "jp": ("NRT51-P2", "NRT57-P3"),
    "sa": ("GRU1-C2", "GRU3-P1"),  # São Paulo (South America), although the docs say Africa
    "us": ("IAD89-P1", "IAD89-P2", "SFO5-P2", "SFO5-P1", "DFW56-P1", "DFW56-P2"),
    "cn": ("PVG52-E1", "SZX51-E1", "BJS9-E1", "ZHY50-E1"),
}
REGION_POPS["all"] = tuple(dict.fromkeys(p for pops in REGION_POPS.values() for p in pops))

_SINGAPORE = ("SIN2-P1", "SIN2-P2")
COUNTRY_POPS: dict[str, tuple[str, ...]] = {
    "india": ("BOM78-P1", "BOM78-P4"),
    "japan": ("NRT57-P2", "NRT57-P3"),
    "australia": ("SYD1-C1", "SYD62-P2"),
    "new_zealand": ("SYD1-C1", "SYD62-P2"),
    "malaysia": _SINGAPORE,
    "china": _SINGAPORE,  # the code maps China to Singapore
    "indonesia": _SINGAPORE,
    "philippines": _SINGAPORE,
    "singapore": _SINGAPORE,
    "thailand": _SINGAPORE,
    "vietnam": _SINGAPORE,
    "south_korea": ("ICN57-P1", "ICN57-P2"),
}
COUNTRY_POPS["all"] = tuple(dict.fromkeys(p for pops in COUNTRY_POPS.values() for p in pops))

# PoPs of AWS China: their *.cloudfront.net names resolve only from a stack in AWS China.
CHINA_POPS = frozenset(REGION_POPS["cn"])

# The body key that carries the list for each target_type.
TARGET_LIST_KEYS = {"pop": "pops", "region": "regions", "country": "countries"}

_POP_RE = re.compile(r"^[A-Z]{3}[0-9]{1,3}-[A-Z][0-9]{1,2}$")


def known_pops() -> frozenset[str]:
    """Every PoP code the solution's tables name."""
    return frozenset(p for t in (REGION_POPS, COUNTRY_POPS) for pops in t.values() for p in pops)


@dataclass(frozen=True)
class Target:
    """Where a job warms: what goes in the request body, and the PoPs that means."""

    target_type: str  # what is sent: pop | region | country
    keys: tuple[str, ...]  # the list sent under pops / regions / countries
    pops: tuple[str, ...]  # the distinct PoPs warmed
    note: str | None = None  # why the request differs from the config, if it does
    unknown_pops: tuple[str, ...] = ()  # PoP codes in no table (may be valid, may wedge)

    @property
    def list_key(self) -> str:
        return TARGET_LIST_KEYS[self.target_type]

    def body(self) -> dict[str, object]:
        """target_type and all three lists, the unused ones empty (the server reads one)."""
        lists: dict[str, object] = {key: [] for key in TARGET_LIST_KEYS.values()}
        lists[self.list_key] = list(self.keys)
        return {"target_type": self.target_type, **lists}

    def describe(self) -> str:
        shown = ", ".join(self.keys)
        return f"{self.target_type} {shown} ({len(self.pops)} PoP{'s' * (len(self.pops) != 1)})"


def resolve_target(
    alias: str,
    target_type: str,
    lists: dict[str, Sequence[str] | None],
    *,
    china_stack: bool,
) -> Target:
    """Checks target_type and its list against the tables; raises ConfigError naming the key."""
    section = f"providers.{alias}"
    if target_type not in TARGET_LIST_KEYS:
        raise ConfigError(
            f"{section}.target_type: {target_type!r} is not one of pop, region, country"
            " (the server treats anything else as pop)"
        )
    wanted = TARGET_LIST_KEYS[target_type]
    for other in TARGET_LIST_KEYS.values():
        if other != wanted and lists.get(other):
            raise ConfigError(
                f"{section}.{other} is set, but target_type = {target_type!r} uses {wanted}"
                f" (remove {other}, or change target_type)"
            )
    raw = lists.get(wanted)
    if not raw:
        what = {"pops": "PoP codes", "regions": "region keys", "countries": "country keys"}
        example = {
            "pops": '["IAD89-P1", "NRT57-P3"]',
            "regions": '["apac", "us"]',
            "countries": '["japan", "india"]',
        }
        raise ConfigError(
            f"{section}.{wanted}: required with target_type = {target_type!r} and must list"
            f" {what[wanted]} (e.g. {wanted} = {example[wanted]}); an empty list makes the"
            " server warm nothing, or fall back to a default set"
        )
    if target_type == "pop":
        return _pop_target(section, raw, china_stack=china_stack)
    table = REGION_POPS if target_type == "region" else COUNTRY_POPS
    return _table_target(section, target_type, wanted, table, raw, china_stack=china_stack)


def _pop_target(section: str, raw: Sequence[str], *, china_stack: bool) -> Target:
    pops = tuple(dict.fromkeys(str(p).strip().upper() for p in raw))
    bad = [p for p in pops if not _POP_RE.match(p)]
    if bad:
        raise ConfigError(
            f"{section}.pops: {', '.join(repr(p) for p in bad)} is not a CloudFront PoP code"
            " (like IAD89-P1: three letters, a number, a dash, a letter and a number)"
        )
    china = sorted(p for p in pops if p in CHINA_POPS)
    if china and not china_stack:
        raise ConfigError(
            f"{section}.pops: {', '.join(china)} are AWS China PoPs, reachable only from a stack"
            " deployed in AWS China (an endpoint under amazonaws.com.cn); remove them"
        )
    known = known_pops()
    unknown = tuple(p for p in pops if p not in known)
    return Target("pop", pops, pops, unknown_pops=unknown)


def _table_target(
    section: str,
    target_type: str,
    list_key: str,
    table: dict[str, tuple[str, ...]],
    raw: Sequence[str],
    *,
    china_stack: bool,
) -> Target:
    # The server lower-cases the keys before the lookup; an unknown one crashes it (502).
    keys = tuple(dict.fromkeys(str(k).strip().lower() for k in raw))
    unknown = [k for k in keys if k not in table]
    if unknown:
        raise ConfigError(
            f"{section}.{list_key}: unknown {target_type} key"
            f"{'s' * (len(unknown) > 1)} {', '.join(repr(k) for k in unknown)}"
            f" (the solution knows: {', '.join(sorted(table))})"
        )
    if not china_stack and target_type == "region":
        if "cn" in keys:
            raise ConfigError(
                f"{section}.regions: 'cn' holds AWS China PoPs, reachable only from a stack"
                " deployed in AWS China (an endpoint under amazonaws.com.cn); remove it"
            )
        if "all" in keys:
            others = ", ".join(f'"{k}"' for k in REGION_POPS if k not in ("all", "cn", "jp"))
            raise ConfigError(
                f"{section}.regions: 'all' includes the AWS China PoPs of 'cn', reachable only"
                f" from a stack in AWS China; list the regions instead: regions = [{others}]"
            )
    expanded = [p for k in keys for p in table[k]]
    pops = tuple(dict.fromkeys(expanded))
    if len(pops) == len(expanded):
        return Target(target_type, keys, pops)
    # Keys sharing PoPs make the server count a PoP twice: the job never reaches FINISHED.
    # The de-duplicated union as a PoP list warms the same places and does finish.
    note = (
        f"{list_key} {', '.join(keys)} share PoPs, which keeps a job IN-PROGRESS until its"
        f" timeout; sent as target_type pop with their {len(pops)} distinct PoPs instead"
    )
    return Target("pop", pops, pops, note=note)
