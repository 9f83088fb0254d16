"""Usage errors are ONE line on stderr with exit status 2, across commands.

Codec specs are checked by one shared callback (`rawsigma.cli.params.codec_option`)
at parse time, before any file is read: the message names the valid codecs or the
parameter's valid range.
"""

from __future__ import annotations

import pytest
from rawsigma.analysis.codecs.registry import CodecError, check_codec_specs
from rawsigma.cli.main import main


def _main(capsys, *args: object) -> tuple[int, list[str], str]:
    """Run ``rawsigma ARGS`` through the real entry point: status, stderr lines, stdout."""
    with pytest.raises(SystemExit) as ex:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return int(ex.value.code), [ln for ln in cap.err.splitlines() if ln.strip()], cap.out


BAD_CODECS = [
    ("jpeg@abc", "ratio='abc' is not a valid float"),
    ("nosuch", "unknown codec 'nosuch'; valid codecs: 8bit, "),
    ("noise:step=99", "step=99.0 is outside [0.01, 2.5]"),
    ("noise:step=2,foo=1", "unknown parameter(s) foo; valid parameters: step"),
    ("noise:dither=1,maxerr=2", "cannot be combined"),
    ("8bit:range=bogus", "is not one of minmax, display"),
    (",", "no codec given"),
]


@pytest.mark.parametrize(("spec", "needle"), BAD_CODECS, ids=[c[0] for c in BAD_CODECS])
@pytest.mark.parametrize("command", [["score"], ["tomo", "score"]], ids=["score", "tomo"])
def test_bad_codec_spec_is_one_line(capsys, tmp_path, command, spec, needle):
    # the image does not exist: the codec list is refused first, at parse time
    rc, err, _ = _main(
        capsys, *command, tmp_path / "none.tif", "--codecs", spec, "--out", tmp_path / "r"
    )
    assert rc == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("error: Invalid value for '--codecs': "), err
    assert needle in err[0], err
    assert not (tmp_path / "r").exists()


OTHER_USAGE = [
    (["score", "x.tif", "--codec", "jpeg"], "No such option: --codec", "rawsigma score --help"),
    (["compress", "x.tif", "--codec", "jpeg"], "No such option: --codec", "compress --help"),
    (["score"], "Missing argument 'image'", "rawsigma score --help"),
    (["nosuch"], "No such command 'nosuch'", "rawsigma --help"),
    (["score", "x.tif", "--replicas", "1"], "Invalid value for '--replicas'", ""),
    # QA session 7: a negative exposure was exit 1 "... seconds >= 0, got -0.005"
    # after the files were read; a negative dither seed was accepted
    (
        ["compress", "x.tif", "-p", "p.h5", "-o", "c.rsnc", "--exposure", "-5"],
        "'--exposure': -5.0 is outside [0, inf) (ms)",
        "",
    ),
    (["score", "x.tif", "--exposure", "nan"], "'--exposure': nan is outside [0, inf)", ""),
    (
        ["compress", "x.tif", "-p", "p.h5", "-o", "c.rsnc", "--seed", "-1"],
        "Invalid value for '--seed'",
        "",
    ),
]


@pytest.mark.parametrize(
    ("args", "needle", "hint"), OTHER_USAGE, ids=[" ".join(a[0]) for a in OTHER_USAGE]
)
def test_click_usage_errors_are_one_line(capsys, args, needle, hint):
    rc, err, _ = _main(capsys, *args)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0] and hint in err[0], err
    assert "╭" not in err[0]


def test_bare_command_still_prints_the_help(capsys):
    rc, err, out = _main(capsys)
    assert rc == 2
    assert "Commands" in out + "\n".join(err)


def test_check_codec_specs_needs_no_profile():
    assert check_codec_specs("8bit,noise:step=2,dither=1,jpeg@10,replica") == [
        "8bit",
        "noise:step=2,dither=1",
        "jpeg@10",
        "replica",
    ]
    with pytest.raises(CodecError, match="step=3.0 is outside"):
        check_codec_specs("noise:step=3")


PLAN_ERRORS = [
    (["--tolerance-search", "bogus,jpeg"], "--tolerance-search: unknown tolerance-search famil"),
    (["--codecs", "jpeg@10,jpeg@10"], "--codecs: duplicate codec specs"),
]


@pytest.mark.parametrize(("extra", "needle"), PLAN_ERRORS, ids=[p[0][0] for p in PLAN_ERRORS])
def test_plan_validation_is_one_line(capsys, tmp_path, extra, needle):
    # pydantic's report (several lines and a URL) becomes one line per run
    rc, err, _ = _main(capsys, "score", tmp_path / "none.tif", "--labels", tmp_path / "l.tif",
                       "--estimate-profile", *extra, "--out", tmp_path / "r")  # fmt: skip
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: invalid options: "), err
    assert needle in err[0] and "pydantic" not in err[0], err


def test_stack_and_sweep_plans_are_one_line(capsys, tmp_path):
    rc, err, _ = _main(capsys, "acquire", "stack", "--frames", "1", "--out", tmp_path / "y.h5")
    assert rc == 2 and len(err) == 1, err
    assert "invalid stack options: n_frames: Input should be greater than or equal to 2" in err[0]
    rc, err, _ = _main(capsys, "calibrate", "--out", tmp_path / "x.h5", "--levels", "1")
    assert rc == 2 and len(err) == 1, err
    assert "invalid sweep options: n_levels:" in err[0]
