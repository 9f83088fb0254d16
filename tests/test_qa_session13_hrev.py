"""QA session 13 (hrev): review of the session's merged work."""

from __future__ import annotations

import numpy as np
from rawsigma.cli import console
from rawsigma.cli.main import app
from typer.testing import CliRunner


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _fields_files(tmp_path, n: int) -> None:
    """``f.tif``: n fields of 48 x 64 px; ``l.tif``: two objects in each."""
    import tifffile

    rng = np.random.default_rng(2)
    imgs = rng.poisson(200, (n, 48, 64)).astype(np.uint16)
    lab = np.zeros(imgs.shape, np.uint8)
    lab[:, 2:8, 2:12], lab[:, 20:30, 20:30] = 1, 2
    tifffile.imwrite(tmp_path / "f.tif", imgs, photometric="minisblack")
    tifffile.imwrite(tmp_path / "l.tif", lab, photometric="minisblack")


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

    def failed(tasks, out, **kw):
        out.mkdir(parents=True, exist_ok=True)
        return tr.TaskOutcome(failed={n: "ValueError: no file [/data/x.tif]" for n in tasks})

    monkeypatch.setattr(tr, "run_tasks", failed)
    _fields_files(tmp_path, 2)
    r = _run("score", tmp_path / "f.tif", "--estimate-profile", "--labels", tmp_path / "l.tif",
             "--all-fields", "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "FAILED: ValueError: no file [/data/x.tif]" in r.output
    assert "internal error" not in r.output


def test_encoder_scratch_follows_the_shape_encoded_now(monkeypatch):
    """`_give` kept a stack's codes and cells only while all kept arrays fit in
    `_SCRATCH_BYTES`, and never dropped any: after stacks of one shape (a 10-frame
    1 Mpx one: 63 MB), a long-lived process (napari, the GUI) encoding another shape
    held the old shape's arrays for good and faulted the new ones in at every encode
    (the session's 10-20 % of a stack's CPU time). Arrays of other kinds now make room."""
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec import encode_pyramid as EP
    from rawsigma.analysis.noisecodec.synthetic import reference_frame

    monkeypatch.setattr(EP, "_SCRATCH", {})
    codecs, stacks = [], []
    for shape in ((64, 96), (96, 128)):
        frame, _, cam = reference_frame(shape, seed=3)
        codecs.append(NoiseCodec(cam.true_profile(), step=2.0, threads=1))
        stacks.append(np.stack([frame] * 3))
    codecs[1].encode(stacks[1])
    need = EP._scratch_bytes()  # what one encode of the larger stack keeps
    EP._SCRATCH.clear()
    monkeypatch.setattr(EP, "_SCRATCH_BYTES", need + 4096)
    codecs[0].encode(stacks[0])
    assert any(k[0] == (3, 64, 96) and v for k, v in EP._SCRATCH.items())
    codecs[1].encode(stacks[1])
    assert any(k[0] == (3, 96, 128) and v for k, v in EP._SCRATCH.items())
    assert EP._scratch_bytes() <= EP._SCRATCH_BYTES


def test_tomo_summary_prints_the_systematic_note():
    """`score_version` gives tomo versions a ``systematic_note`` (a failing parameter
    whose plaques all moved one way), but `tomo score` printed it nowhere: neither its
    summary lines nor report.html (the 2D and 3D commands show both)."""
    import io
    from types import SimpleNamespace

    from rawsigma.cli.tomo_score_cmd import _print_tomo_summary
    from rich.console import Console

    note = "noise: a systematic shift, not scatter: Volume is larger in noise [x]"
    v = SimpleNamespace(spec="noise", ratio=4.0, globals={},
                        verdict={"within_noise": False, "worst": ["Volume", -2.0],
                                 "systematic_note": note})  # fmt: skip
    buf = io.StringIO()
    _print_tomo_summary(SimpleNamespace(n_objects=7, segmenter="otsu", versions=[v]),
                        Console(file=buf, width=200))  # fmt: skip
    assert note in buf.getvalue()


def test_forced_many_field_run_does_not_keep_another_runs_fields(tmp_path, monkeypatch):
    """`score --all-fields --force` into an OUT of another run (other options) replaced
    its fields one by one. Ctrl-C after one field said "3 of 3 fields are written …: the
    same command scores the rest", counting the other run's fields; and the next run
    without --force (run.json now records the new options) kept them as its own: a
    summary mixing two runs' options, exit 0. The other run's results now go at the
    start (--force replaces them) and the line counts this run's fields."""
    import json

    import rawsigma.analysis.outofcore.taskrun as tr
    from rawsigma.cli.score_many import list_fields

    _fields_files(tmp_path, 3)
    out = tmp_path / "o"
    names = [f.name for f in list_fields(tmp_path / "f.tif", tmp_path / "l.tif")]
    for n in names:  # another run's fields and record
        (out / "fields" / n).mkdir(parents=True)
        (out / "fields" / n / "results.json").write_text("{}")
    (out / "run.json").write_text(json.dumps({"codecs": "zstd"}))
    (out / "summary.json").write_text(json.dumps({"run": {"codecs": "zstd"}}))

    def interrupted(tasks, fields, **kw):
        (fields / names[0]).mkdir(parents=True, exist_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "run_tasks", interrupted)
    r = _run("score", tmp_path / "f.tif", "--estimate-profile", "--labels", tmp_path / "l.tif",
             "--all-fields", "--force", "--out", out)  # fmt: skip
    assert r.exit_code == 130, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("interrupted:")]
    assert f"1 of 3 fields are written in {out / 'fields'}" in line, line
    assert "without --force" in line, line
    assert sorted(p.name for p in (out / "fields").iterdir()) == names[:1]
    assert not (out / "summary.json").exists()


def test_forced_volume_graph_ctrl_c_names_a_way_that_continues(tmp_path, monkeypatch):
    """Ctrl-C during `score VOLUME --scheduler local --force` said "the same command
    continues them (--force redoes all)": the same command has --force (it redoes all),
    and over an earlier report the command without --force refuses the OUT."""
    import rawsigma.analysis.scoring.volume_graph as vg
    from test_qa_session13_hnew import _small_volume

    def interrupted(vol, prof, work, **kw):
        (work / "tasks" / "raw").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(vg, "score_volume_tasks", interrupted)
    v, lab = _small_volume(tmp_path)
    args = ["score", v, "--estimate-profile", "--labels", lab, "--chunks", "4,48,64",
            "--codecs", "8bit", "--replicas", "2", "--force"]  # fmt: skip
    lines = []
    for out in (tmp_path / "new", tmp_path / "old"):
        if out.name == "old":
            out.mkdir()
            (out / "report.html").write_text("an earlier report")
        monkeypatch.setattr(console, "_INTERRUPT_SHOWN", [False])
        r = _run(*args, "--out", out)
        assert r.exit_code == 130, r.output
        (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("interrupted:")]
        assert f"the finished tasks are kept in {out / 'work'}" in line, line
        lines.append(line)
    assert "the command without --force continues them" in lines[0], lines[0]
    assert "continues" not in lines[1] and "report.html" in lines[1], lines[1]
