"""`config show`: every setting of the config file, where it came from; secrets redacted."""

from __future__ import annotations

from collections.abc import Mapping

from prewarm_cli.config import DEFAULTS_FIELDS, REDACTED, ROUTE_KEYS, Config
from prewarm_cli.config_values import format_value, looks_secret
from prewarm_cli.plugin import CORE_FIELDS, Provider

__all__ = ["show_rows"]

UNSET = "(unset)"


def show_rows(config: Config, classes: Mapping[str, type[Provider]]) -> list[dict[str, str]]:
    """Rows {key, value, source} for `config show`; secrets are always redacted."""
    rows: list[dict[str, str]] = []
    raw_defaults = config.raw.get("defaults", {})
    for fld in DEFAULTS_FIELDS:
        if fld.name in config.defaults:
            rows.append(
                {
                    "key": f"defaults.{fld.name}",
                    "value": format_value(config.defaults[fld.name]),
                    "source": "file" if fld.name in raw_defaults else "default",
                }
            )
    for alias in config.aliases():
        prefix = f"providers.{alias}"
        cls = classes.get(config.provider_type(alias))
        if cls is None:
            for key, value in config.providers[alias].items():
                is_ref = isinstance(value, str) and value.startswith("env:")
                shown = REDACTED if looks_secret(key) and not is_ref else format_value(value)
                rows.append(
                    {
                        "key": f"{prefix}.{key}",
                        "value": shown,
                        "source": "file (unknown provider type)",
                    }
                )
            continue
        settings, unset = config.resolve_partly(alias, cls)
        shown_rows = {key: (value, source) for key, value, source in settings.display()}
        for fld in (*CORE_FIELDS[:1], *cls.config_schema, *CORE_FIELDS[1:]):
            if fld.name in shown_rows:
                value, source = shown_rows[fld.name]
            elif fld.name in unset:
                value, source = UNSET, unset[fld.name]
            else:
                continue
            rows.append({"key": f"{prefix}.{fld.name}", "value": value, "source": source})
    for i, route in enumerate(config.routes):
        for key in ROUTE_KEYS:
            rows.append(
                {
                    "key": f"routes[{i}].{key}",
                    "value": format_value(list(getattr(route, key))),
                    "source": "file",
                }
            )
    return rows
