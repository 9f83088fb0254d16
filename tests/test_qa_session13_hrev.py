"""QA session 13 (hrev): review of the session's merged work."""

from __future__ import annotations

import numpy as np
from rawsigma.cli import console
from rawsigma.cli.main import app
from typer.testing import CliRunner


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_interrupted_line_keeps_square_brackets(monkeypatch, capsys):
    """`print_interrupted` put its text (paths of what was kept) into rich markup: an
    output folder 'run[/x]' raised MarkupError at Ctrl-C (a traceback, not exit 130),
    and 'run[b]' printed the rest in bold without '[b]'."""
    monkeypatch.setattr(console, "_INTERRUPT_SHOWN", [False])
    assert console.print_interrupted("no summary; 1 of 3 fields are written in o[/x]/fields") == 130
    assert "1 of 3 fields are written in o[/x]/fields" in capsys.readouterr().err
    monkeypatch.setattr(console, "_INTERRUPT_SHOWN", [False])
    console.print_interrupted("kept in run[b]/out")
    assert "kept in run[b]/out" in capsys.readouterr().err


def test_many_fields_failed_line_keeps_square_brackets(tmp_path, monkeypatch):
    """A field's error quoting '[/…]' (a path in a list) made the FAILED line raise
    MarkupError after the summary was written: "internal error" instead of the fields
    that failed and exit 1."""
    import rawsigma.analysis.outofcore.taskrun as tr
    import tifffile

    def failed(tasks, out, **kw):
        out.mkdir(parents=True, exist_ok=True)
        return tr.TaskOutcome(failed={n: "ValueError: no file [/data/x.tif]" for n in tasks})

    monkeypatch.setattr(tr, "run_tasks", failed)
    rng = np.random.default_rng(2)
    imgs = rng.poisson(200, (2, 48, 64)).astype(np.uint16)
    lab = np.zeros(imgs.shape, np.uint8)
    lab[:, 2:8, 2:12], lab[:, 20:30, 20:30] = 1, 2
    tifffile.imwrite(tmp_path / "f.tif", imgs, photometric="minisblack")
    tifffile.imwrite(tmp_path / "l.tif", lab, photometric="minisblack")
    r = _run("score", tmp_path / "f.tif", "--estimate-profile", "--labels", tmp_path / "l.tif",
             "--all-fields", "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "FAILED: ValueError: no file [/data/x.tif]" in r.output
    assert "internal error" not in r.output
