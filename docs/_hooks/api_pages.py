"""mkdocs hook: write the API reference pages from the code before each build.

One page per public namespace under ``docs/api/`` (git-ignored): the namespace's
docstring, then every public name, read from its ``_EXPORTS`` table (lazy
namespaces) or its ``__all__`` (eager ones), each rendered by mkdocstrings from its
defining module. The package is read from ``build/layout`` (the installed layout,
see ``tools/layout.py``), which this hook builds too.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from layout import build_layout  # noqa: E402

# page file -> (namespace, source folder of its __init__.py)
NAMESPACES = {
    "rawsigma.md": ("rawsigma", "common"),
    "acquire.md": ("rawsigma.acquire", "acquire"),
    "calib.md": ("rawsigma.calib", "calib"),
    "analysis.md": ("rawsigma.analysis", "analysis"),
    "analysis.noisemodel.md": ("rawsigma.analysis.noisemodel", "analysis/noisemodel"),
    "analysis.codecs.md": ("rawsigma.analysis.codecs", "analysis/codecs"),
    "analysis.noisecodec.md": ("rawsigma.analysis.noisecodec", "analysis/noisecodec"),
    "analysis.segmentation.md": ("rawsigma.analysis.segmentation", "analysis/segmentation"),
    "analysis.measurement.md": ("rawsigma.analysis.measurement", "analysis/measurement"),
    "analysis.scoring.md": ("rawsigma.analysis.scoring", "analysis/scoring"),
    "analysis.reporting.md": ("rawsigma.analysis.reporting", "analysis/reporting"),
    "analysis.phantoms.md": ("rawsigma.analysis.phantoms", "analysis/phantoms"),
    "analysis.outofcore.md": ("rawsigma.analysis.outofcore", "analysis/outofcore"),
    "analysis.tomo.md": ("rawsigma.analysis.tomo", "analysis/tomo"),
}
# the shared modules of the top-level package, documented whole on its page
ROOT_MODULES = ("rawsigma.errors", "rawsigma.fileio", "rawsigma.imread")


def public_names(init: Path) -> dict[str, str]:
    """Public name -> defining module (relative) of a namespace's ``__init__.py``."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            if any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
                names.update(ast.literal_eval(node.value))
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple):
            if any(getattr(t, "id", None) == "__all__" for t in node.targets):
                for name in ast.literal_eval(node.value):
                    names.setdefault(name, "")
    return names


def page(namespace: str, init: Path) -> str:
    """Markdown of one namespace's page."""
    lines = [f"# `{namespace}`", "", f"::: {namespace}", "    options:", "      members: false", ""]
    if namespace == "rawsigma":
        for module in ROOT_MODULES:
            lines += [
                f"## `{module}`",
                "",
                f"::: {module}",
                "    options:",
                "      heading_level: 3",
                "",
            ]
        return "\n".join(lines)
    by_module: dict[str, list[str]] = defaultdict(list)
    for name, module in sorted(public_names(init).items()):
        if name != "__version__":
            by_module[module].append(name)
    for module in sorted(by_module):
        home = _subpackage_page(namespace, module)
        if home:  # re-exported from a subpackage that has its own page: link there
            for name in by_module[module]:
                lines.append(f"- `{name}`: see [{namespace}.{module.split('.')[0]}]({home})")
            lines.append("")
            continue
        for name in by_module[module]:
            target = f"{namespace}.{module}.{name}" if module else f"{namespace}.{name}"
            lines += [f"::: {target}", "    options:", "      heading_level: 2", ""]
    return "\n".join(lines)


def _subpackage_page(namespace: str, module: str) -> str | None:
    """Page of the documented subpackage ``module`` belongs to, if it is not this one."""
    head = f"{namespace}.{module.split('.')[0]}" if module else ""
    for filename, (other, _) in NAMESPACES.items():
        if other == head and other != namespace:
            return filename
    return None


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Build the layout and (re)write ``docs/api/*.md``."""
    build_layout()
    out = Path(config["docs_dir"]) / "api"
    out.mkdir(exist_ok=True)
    for filename, (namespace, folder) in NAMESPACES.items():
        text = page(namespace, REPO / folder / "__init__.py")
        target = out / filename
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
