"""Fault injection on the ``rawsigma`` command (issue 10): signals, concurrent writers, disks.

1. ``signals``: ``calibrate``, ``compress``, ``score`` and ``acquire stack`` on tiny
   inputs, each interrupted ``--points`` times at a random moment between its start
   and the end of an uninterrupted run (half ``kill -9``, half SIGINT = Ctrl-C).
   After each run the directory is judged:

   - the output is either absent or valid (the profile loads, the container decodes to
     the input's frame count, the report has all its files, the stack summary reads);
   - ``calibrate``'s partial file, when present, reads back (``read_partial``);
   - after SIGINT: exit 130 (or 0 if it finished first), at most one stderr line, no
     traceback, no temporaries, and the message matches the disk (it names the
     partial file iff one exists, "nothing" iff no output);
   - after ``kill -9``: temporaries may remain (no process can clean up after SIGKILL);
     the same command is then rerun (``--resume`` when a partial file exists) and must
     succeed and leave none behind.

2. ``concurrent``: three ``calibrate`` (and three ``compress --force``) started together
   on one output: one writes, the others are refused naming the writer's PID (or find
   the finished output), the output is valid, nothing is left behind.
3. ``disk``: a 12 MB tmpfs (needs root and mount): outputs larger than the free space
   are refused before the work; a disk that fills up *during* ``calibrate
   --save-frames`` (a filler process) gives one "disk full" line, a valid partial file
   or none, and ``--resume`` completes after space is freed.
4. ``readonly``: a read-only tmpfs: every writing command is refused with one line.

Prints one line per scenario with counts; exit status 1 if any run was judged bad.

    python benchmarks/bench_faults.py [--points 50] [--parts signals,concurrent,disk,readonly]
        [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SMALL = ["-p", "Camera.SensorWidth=32", "-p", "Camera.SensorHeight=32", "-q"]
RAWSIGMA = [sys.executable, "-m", "rawsigma.cli.main"]
REPO = str(Path(__file__).resolve().parents[1])


def make_inputs(d: Path) -> None:
    """Raw frames + profile (64×64) for compress; a 128×128 labelled image for score."""
    import tifffile
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d

    m = SensorModel.preset("scmos", (64, 64), seed=2)
    rng = np.random.default_rng(0)
    frames = np.stack([m.expose(np.full((64, 64), 300.0), 0.01, rng) for _ in range(60)])
    np.save(d / "raw.npy", frames)
    m.true_profile().save(d / "prof.h5")
    m2 = SensorModel.preset("scmos", (128, 128), seed=2)
    bright, truth = nuclei2d((128, 128), n_objects=8, rng=1, n_beads=0)
    tifffile.imwrite(d / "img.tif", m2.expose(40 + 900 * bright, 0.01, rng))
    tifffile.imwrite(d / "truth.tif", truth.astype(np.uint16))
    m2.true_profile().save(d / "prof128.h5")


def commands(inp: Path, d: Path) -> dict[str, list[str]]:
    return {
        "calibrate": ["calibrate", "--out", f"{d}/p.h5", "--levels", "3", "--frames", "400",
                      "--dark", "400", "--seed", "1", "--save-frames", f"{d}/fr.h5", *SMALL],
        "compress": ["compress", f"{inp}/raw.npy", "-p", f"{inp}/prof.h5", "--out",
                     f"{d}/c.zarr"],
        "score": ["score", f"{inp}/img.tif", "-p", f"{inp}/prof128.h5", "--labels",
                  f"{inp}/truth.tif", "--codecs", "8bit", "--replicas", "2", "--out", f"{d}/r"],
        "stack": ["acquire", "stack", "--out", f"{d}/s.h5", "--frames", "3000",
                  "--save-frames", f"{d}/f.ome.tif", *SMALL],
    }  # fmt: skip


# ---------------------------------------------------------------- validity of what is on disk
def leftovers(d: Path) -> list[str]:
    return sorted(
        str(p.relative_to(d))
        for p in d.rglob(".*")
        if p.name.endswith((".tmp", ".partial", ".lock")) or "rawsigma-probe" in p.name
    )


def valid_output(name: str, d: Path) -> str | None:
    """'absent', 'valid', or an error text."""
    try:
        if name == "calibrate":
            if not (d / "p.h5").exists():
                return "absent"
            from rawsigma.calib.profile import CameraProfile

            CameraProfile.load(d / "p.h5")
        elif name == "compress":
            if not (d / "c.zarr").exists():
                return "absent"
            from rawsigma.analysis.noisecodec.containers import read_compressed

            n = read_compressed(d / "c.zarr").shape[0]
            if n != 60:
                return f"decoded {n} frames of 60"
        elif name == "score":
            files = [d / "r" / f for f in ("report.html", "results.json", "objects.csv", "maps.h5")]
            have = [f.exists() for f in files]
            if not any(have):
                return "absent"
            if not all(have):
                return f"incomplete report {have}"
            json.loads(files[1].read_text())
        elif name == "stack":
            import h5py

            if not (d / "s.h5").exists():
                return "absent" if not (d / "f.ome.tif").exists() else "valid"  # frames only
            with h5py.File(d / "s.h5") as f:
                assert f.attrs["kind"] == "rawsigma-stack"
    except Exception as exc:  # noqa: BLE001 - any failure is an invalid output
        return f"invalid output: {type(exc).__name__}: {exc}"
    return "valid"


def valid_partial(d: Path) -> str:
    p = d / "p.h5.partial.h5"
    if not p.exists():
        return "absent"
    from rawsigma.acquire.partial import read_partial

    try:
        read_partial(p)
    except Exception as exc:  # noqa: BLE001
        return f"invalid partial: {exc}"
    return "valid"


def message_lines(err: str) -> list[str]:
    """stderr without progress-bar lines (rich prints their final state)."""
    return [ln for ln in err.strip().splitlines() if "━" not in ln and " 0/1 " not in ln]


def truthful(name: str, d: Path, err: str) -> str | None:
    """None if the interruption message matches the disk, else why not."""
    line = " ".join(message_lines(err))
    out_state = valid_output(name, d)
    if "nothing" in line and out_state != "absent":
        return f"says nothing but output is {out_state}"
    if name == "calibrate":
        part = (d / "p.h5.partial.h5").exists()
        if part != ("p.h5.partial.h5" in line):
            return f"partial exists={part} but message {line!r}"
        if not part and "no partial file" not in line and "nothing" not in line:
            return f"no partial, message {line!r}"
    elif "nothing" not in line and "unchanged" not in line:
        return f"message {line!r}"
    return None


# ---------------------------------------------------------------- one interrupted run
def _default_sigint() -> None:
    """Children take Ctrl-C even when this script runs in the background (SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(args: list[str], timeout: float = 300) -> tuple[int, str]:
    r = subprocess.run([*RAWSIGMA, *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stderr


def interrupted_run(name: str, inp: Path, base: Path, i: int, sig: int, delay: float) -> dict:
    d = base / f"{name}-{i:03d}"
    d.mkdir()
    argv = commands(inp, d)[name]
    p = subprocess.Popen([*RAWSIGMA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=_default_sigint)  # fmt: skip
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    rc = p.returncode
    res = {"name": name, "sig": sig, "rc": rc, "bad": None, "kind": None, "stale": 0}
    out_state = valid_output(name, d)
    part_state = valid_partial(d) if name == "calibrate" else "absent"
    if out_state not in ("absent", "valid"):
        res["bad"] = out_state
    elif part_state not in ("absent", "valid"):
        res["bad"] = part_state
    elif "KeyboardInterrupt" in err and REPO not in err and rc != 0:
        res["kind"] = "hit Python start-up (interpreter traceback, before rawsigma code)"
        res["kept"] = out_state
        return res
    elif "Traceback" in err or len(message_lines(err)) > 1:
        res["bad"] = f"stderr: {err[-400:]!r}"
    if rc == 0:
        res["kind"] = "finished first"
        if out_state != "valid" or leftovers(d):
            res["bad"] = res["bad"] or f"exit 0 but output {out_state}, {leftovers(d)}"
    elif sig == signal.SIGINT:
        res["kind"] = "interrupted"
        if rc != 130:
            res["bad"] = res["bad"] or f"exit {rc} after SIGINT: {err[-300:]!r}"
        elif leftovers(d):
            res["bad"] = res["bad"] or f"temporaries after SIGINT: {leftovers(d)}"
        else:
            why = truthful(name, d, err)
            res["bad"] = res["bad"] or why
        res["kept"] = "partial" if part_state == "valid" else out_state
    else:
        res["kind"] = "killed"
        res["stale"] = len([x for x in leftovers(d) if not x.endswith(".lock")])
        res["kept"] = "partial" if part_state == "valid" else out_state
    if res["bad"] is None and rc != 0 and (leftovers(d) or part_state == "valid"):
        # the rerun must not be blocked, and must clean up what the killed run left
        extra = ["--resume", "--force"] if part_state == "valid" else ["--force"]
        rrc, rerr = run_cli([*argv, *extra])
        res["rerun"] = rrc
        if rrc != 0 or valid_output(name, d) != "valid" or leftovers(d):
            res["bad"] = f"rerun exit {rrc}: {rerr[-300:]!r}, left {leftovers(d)}"
    if res["bad"] is None:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    return res


def baseline(name: str, inp: Path, base: Path) -> float:
    d = base / f"{name}-baseline"
    d.mkdir()
    t0 = time.perf_counter()
    rc, err = run_cli(commands(inp, d)[name])
    dt = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"baseline {name} failed: {err}")
    return dt


def part_signals(
    inp: Path, base: Path, points: int, workers: int, rng: random.Random, a: argparse.Namespace
) -> int:
    n_bad = 0
    sigs = [{"kill": signal.SIGKILL, "int": signal.SIGINT}[s] for s in a.signals.split(",")]
    for name in a.commands.split(","):
        t = baseline(name, inp, base)
        jobs = []
        for i in range(points):
            sig = sigs[i % len(sigs)]
            jobs.append((name, inp, base, i, sig, rng.uniform(0.05, 1.05 * t)))
        with ThreadPoolExecutor(workers) as ex:
            results = list(ex.map(lambda a: interrupted_run(*a), jobs))
        c = Counter()
        for r in results:
            s = "SIGKILL" if r["sig"] == signal.SIGKILL else "SIGINT"
            c[f"{s} {r['kind']}"] += 1
            if r.get("kept"):
                c[f"{s} kept {r['kept']}"] += 1
            c["stale temporaries after SIGKILL (removed by the rerun)"] += r["stale"]
            c["reruns ok"] += r.get("rerun", None) == 0
            if r["bad"]:
                c["BAD"] += 1
                print(f"  BAD {name} {s}: {r['bad']}", flush=True)
        n_bad += c["BAD"]
        print(f"{name}: {points} points (baseline {t:.1f} s), {dict(sorted(c.items()))}",
              flush=True)  # fmt: skip
    return n_bad


# ---------------------------------------------------------------- concurrent writers
def part_concurrent(inp: Path, base: Path, trials: int) -> int:
    n_bad = 0
    for name, force in (("calibrate", []), ("compress", ["--force"])):
        c = Counter()
        for t in range(trials):
            d = base / f"conc-{name}-{t}"
            d.mkdir()
            argv = [*commands(inp, d)[name], *force]
            pipe = subprocess.PIPE
            procs = [
                subprocess.Popen([*RAWSIGMA, *argv], stdout=pipe, stderr=pipe, text=True)
                for _ in range(3)
            ]
            outs = [p.communicate(timeout=300)[1] for p in procs]
            rcs = [p.returncode for p in procs]
            pids = {p.pid for p in procs}
            ok = rcs.count(0) >= 1 and valid_output(name, d) == "valid" and not leftovers(d)
            for rc, err in zip(rcs, outs, strict=True):
                if rc == 0:
                    c["wrote"] += 1
                elif rc == 1 and "another rawsigma (PID" in err:
                    pid = int(err.split("(PID ")[1].split(")")[0])
                    c["refused, holder PID named"] += 1
                    ok &= pid in pids
                elif rc == 1 and "exists" in err:
                    c["refused, output exists"] += 1
                else:
                    ok = False
                    print(f"  BAD concurrent {name}: exit {rc} {err[-300:]!r}", flush=True)
            if name == "calibrate":
                ok &= rcs.count(0) == 1
            c["trials ok"] += ok
            n_bad += not ok
        print(f"concurrent {name} x3{' --force' if force else ''}: {trials} trials, "
              f"{dict(c)}", flush=True)  # fmt: skip
    return n_bad


# ---------------------------------------------------------------- disks
def _mount(d: Path, opts: str) -> bool:
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)],
                       capture_output=True)  # fmt: skip
    return r.returncode == 0


def _one_line_error(rc: int, err: str, *words: str) -> bool:
    return (
        rc == 1
        and len(message_lines(err)) == 1
        and "Traceback" not in err
        and any(w in err for w in words)
    )


def part_disk(inp: Path, base: Path, trials: int, rng: random.Random) -> int:
    d = base / "small"
    if not _mount(d, "size=12m"):
        print("disk: skipped (mounting a tmpfs needs root)")
        return 0
    n_bad = 0
    c = Counter()
    try:
        (d / "fill").write_bytes(b"\0" * 11_500_000)
        for name, argv in commands(inp, d).items():
            rc, err = run_cli(argv)
            ok = _one_line_error(rc, err, "not enough free space", "disk full")
            ok &= sorted(os.listdir(d)) == ["fill"]
            c[f"{name} refused before work" if ok else "BAD"] += 1
            if not ok:
                print(f"  BAD disk {name}: {rc} {err!r} {os.listdir(d)}")
        (d / "fill").unlink()
        for t in range(trials):  # the disk fills up during the sweep
            sub = d / f"t{t}"
            sub.mkdir()
            argv = commands(inp, sub)["calibrate"]
            p = subprocess.Popen([*RAWSIGMA, *argv], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
            time.sleep(rng.uniform(1.0, 6.0))
            try:
                with open(d / "hog", "wb") as fh:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
            except OSError:
                pass
            _, err = p.communicate(timeout=300)
            rc = p.returncode
            part = valid_partial(sub)
            if rc == 0:
                kind = "finished before the disk filled"
                ok = valid_output("calibrate", sub) == "valid"
            else:
                kind = "disk full"
                ok = _one_line_error(rc, err, "disk full", "not enough free space")
                ok &= part in ("absent", "valid") and valid_output("calibrate", sub) == "absent"
                ok &= (("kept in" in err) == (part == "valid")) if ok else False
            (d / "hog").unlink()
            if rc != 0 and ok:  # space is back: the rerun completes
                extra = ["--resume"] if part == "valid" else []
                rrc, rerr = run_cli([*argv, *extra, "--force"] if extra else argv)
                ok = rrc == 0 and valid_output("calibrate", sub) == "valid" and not leftovers(sub)
                kind += f", partial {part}, rerun {'ok' if ok else 'FAILED ' + rerr[-200:]}"
            c[kind if ok else "BAD"] += 1
            if not ok:
                print(f"  BAD disk-full calibrate: {rc} {err!r} {leftovers(sub)}")
            n_bad += not ok
            import shutil

            shutil.rmtree(sub, ignore_errors=True)
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)
    print(f"disk (12 MB tmpfs): {dict(c)}", flush=True)
    return n_bad + c["BAD"]


def part_readonly(inp: Path, base: Path) -> int:
    d = base / "ro"
    if not _mount(d, "ro,size=1m"):
        print("readonly: skipped (mounting a tmpfs needs root)")
        return 0
    c = Counter()
    try:
        for name, argv in commands(inp, d).items():
            rc, err = run_cli(argv)
            ok = _one_line_error(rc, err, "read-only", "permission denied")
            c[f"{name} refused" if ok else "BAD"] += 1
            if not ok:
                print(f"  BAD readonly {name}: {rc} {err!r}")
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)
    print(f"readonly: {dict(c)}", flush=True)
    return c["BAD"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--parts", default="signals,concurrent,disk,readonly")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", default="calibrate,compress,score,stack")
    ap.add_argument("--signals", default="kill,int", help="kill (SIGKILL), int (SIGINT)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    parts = a.parts.split(",")
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average), {os.cpu_count()} CPUs")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="rawsigma-faults-") as tmp:
        base = Path(tmp)
        inp = base / "inputs"
        inp.mkdir()
        make_inputs(inp)
        bad = 0
        if "signals" in parts:
            bad += part_signals(inp, base, a.points, a.workers, rng, a)
        if "concurrent" in parts:
            bad += part_concurrent(inp, base, a.trials)
        if "disk" in parts:
            bad += part_disk(inp, base, a.trials, rng)
        if "readonly" in parts:
            bad += part_readonly(inp, base)
    print(f"bad runs: {bad}; {time.time() - t0:.0f} s")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
