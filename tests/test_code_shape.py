"""The shape of the code: no function longer than one screen of code.

Every module of the package is parsed with :mod:`ast`; a function's code lines are
the physical lines of its body that hold code (the signature, docstrings, comments
and blank lines do not count: a typer command declares its options in the
signature; a nested function counts in its parent too). Numba
kernels are left out: functions decorated with ``njit``/``jit``/``vectorize``/
``guvectorize`` and the kernel modules (``*kernel.py``, ``*kernels.py``), whose loops
are written flat for the compiler.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The folders of the package (pyproject.toml ``package-dir``).
PACKAGE_DIRS = [
    "acquire", "analysis", "calib", "cli", "common", "gui", "hardware_profiles",
    "napari_plugin",
]  # fmt: skip
MAX_CODE_LINES = 80
KERNEL_DECORATORS = {"njit", "jit", "vectorize", "guvectorize", "cfunc", "stencil"}
NOT_CODE = {
    tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
    tokenize.ENDMARKER,
}  # fmt: skip

Function = ast.FunctionDef | ast.AsyncFunctionDef
#: Long functions still to be cut into steps ("folder/module.py:function"); an entry
#: fails the test once its function is short (remove it then). Empty: keep it so.
KNOWN_LONG: set[str] = set()


def _modules() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (REPO / d).rglob("*.py"))


def _is_kernel_module(path: Path) -> bool:
    return path.stem.endswith(("kernel", "kernels"))


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | Function) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def code_lines(source: str) -> set[int]:
    """Line numbers holding code: not blank, not only a comment, not a docstring."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines - _docstring_lines(ast.parse(source))


def long_functions(
    path: Path, limit: int = MAX_CODE_LINES, root: Path = REPO
) -> list[tuple[str, int]]:
    """``(module:function, code lines)`` of the functions of ``path`` over ``limit``."""
    if _is_kernel_module(path):
        return []
    source = path.read_text(encoding="utf-8")
    code = code_lines(source)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, Function):
            continue
        if any(_decorator_name(d) in KERNEL_DECORATORS for d in node.decorator_list):
            continue
        start, end = node.body[0].lineno, node.end_lineno or node.lineno
        n = sum(1 for line in code if start <= line <= end)
        if n > limit:
            found.append((f"{path.relative_to(root).as_posix()}:{node.name}", n))
    return found


def test_the_counter_counts_code_lines_only(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}  # comment" for i in range(MAX_CODE_LINES))
    source = f'def f(\n    a,\n):\n    """Doc.\n\n    More.\n    """\n\n    # note\n{body}\n'
    # the signature's three lines and the body's lines; not the docstring, blank, comment
    assert len(code_lines(source)) == 3 + MAX_CODE_LINES
    path = tmp_path / "probe.py"
    path.write_text(source, encoding="utf-8")
    assert long_functions(path, limit=MAX_CODE_LINES - 1, root=tmp_path) == [
        ("probe.py:f", MAX_CODE_LINES)
    ]


def test_a_long_function_is_found(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_CODE_LINES))
    kernel = f"@numba.njit(cache=True)\ndef g():\n{body}\n"
    path = tmp_path / "probe.py"
    path.write_text(f"def f():\n{body}\n\n\n{kernel}", encoding="utf-8")
    assert long_functions(path, limit=MAX_CODE_LINES - 1, root=tmp_path) == [
        ("probe.py:f", MAX_CODE_LINES)
    ]
    assert long_functions(path, root=tmp_path) == []
    kernels = tmp_path / "probe_kernels.py"
    kernels.write_text(path.read_text(), encoding="utf-8")
    assert long_functions(kernels, limit=MAX_CODE_LINES - 1, root=tmp_path) == []


@pytest.mark.parametrize("folder", PACKAGE_DIRS)
def test_no_function_over_80_code_lines(folder: str) -> None:
    found = [
        (name, n)
        for path in _modules()
        if path.relative_to(REPO).parts[0] == folder
        for name, n in long_functions(path)
    ]
    too_long = [f"{name}: {n} code lines" for name, n in found if name not in KNOWN_LONG]
    known_here = {k for k in KNOWN_LONG if k.split("/")[0] == folder}
    assert known_here <= {name for name, _ in found}, "cut: remove from KNOWN_LONG"
    assert not too_long, (
        f"functions over {MAX_CODE_LINES} code lines (cut them into named steps):\n"
        + "\n".join(too_long)
    )
