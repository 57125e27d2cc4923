"""The settings table of docs/settings.md, rendered from the declarations in `resolvers.platform.config` (one row per
setting, in declaration order). `spendplane docs-tables` puts it in the page; CI checks it is fresh."""

from __future__ import annotations

from resolvers.platform.config import Setting, all_settings


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _default(spec: Setting) -> str:
    if spec.shown_default is not None:
        return spec.shown_default
    if spec.default is None:
        return "unset"
    if spec.default == "":
        return "empty"
    return f"`{spec.default}`"


def settings_table(settings: list[Setting] | None = None) -> str:
    rows = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for spec in all_settings() if settings is None else settings:
        rows.append(f"| `{spec.env}` | {cell(_default(spec))} | {cell(spec.accepts or '')} | {cell(spec.doc)} |")
    return "\n".join(rows) + "\n"
