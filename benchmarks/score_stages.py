"""Where `score_image`'s CPU goes: its steps run one at a time, in score's order.

`score_image` overlaps its steps (the replicas are drawn beside the encoding and the
training; raw's pass runs beside the replicas' block pass; codecs are scored on two
threads), so the process CPU of one step cannot be read off a score run. Here every
step is called on its own with score's arguments and the same functions (the runner's
own helpers), timed by the process's CPU (user + system, all threads), one after the
other. Their sum is compared with a score measured in one piece: the steps are the
score's work if the two agree.

Stages that contain segmentation passes ("raw pass", "replica passes", "codec passes")
also print what they cost beyond ``n`` passes (``n`` × the median pass of the same run):
that and every other stage is the work outside the 15 passes.

Used by ``bench_score.py --part synthetic`` (``python benchmarks/bench_score.py``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Ledger", "cpu", "score_stages"]


def cpu() -> float:
    """Process CPU seconds (user + system, every thread)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sys_cpu() -> float:
    """Process system CPU seconds (page faults, thread start-up, ...)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


class Ledger:
    """CPU seconds per stage, in first-seen order; ``passes`` = passes a stage holds."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.sys: dict[str, float] = {}
        self.passes: dict[str, int] = {}

    def add(self, stage: str, seconds: float, passes: int = 0, system: float = 0.0) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds
        self.sys[stage] = self.sys.get(stage, 0.0) + system
        self.passes[stage] = self.passes.get(stage, 0) + passes

    @contextlib.contextmanager
    def __call__(self, stage: str, passes: int = 0) -> Iterator[None]:
        c, s = cpu(), sys_cpu()
        yield
        self.add(stage, cpu() - c, passes, sys_cpu() - s)

    def table(self, one_pass: float, score_cpu: float | None = None) -> str:
        """Markdown table: stage, CPU s, passes in it, CPU outside the passes."""
        lines = [
            "| stage | CPU s | of which system | passes | outside the passes, CPU s |",
            "|---|---|---|---|---|",
        ]
        total = outside = 0.0
        for k, v in self.cpu.items():
            n = self.passes[k]
            rest = v - n * one_pass
            total, outside = total + v, outside + rest
            lines.append(f"| {k} | {v:.2f} | {self.sys[k]:.2f} | {n or ''} | {rest:.2f} |")
        n_all, s_all = sum(self.passes.values()), sum(self.sys.values())
        lines.append(f"| **sum** | **{total:.2f}** | {s_all:.2f} | {n_all} | **{outside:.2f}** |")
        if score_cpu is not None:
            lines.append(
                f"\nsum of the stages {total:.1f} s CPU, score in one piece {score_cpu:.1f} s; "
                f"outside the passes {outside:.1f} s = {outside / (n_all * one_pass):.3f} × "
                f"{n_all} passes ({one_pass:.2f} s each)"
            )
        return "\n".join(lines)


def _training(led: Ledger, runner: Any, image, labels, plan, seed) -> Any:
    """The runner's `_make_segmenter`, its training features and its fit timed apart."""
    from rawsigma.analysis.segmentation.classifier import PixelClassifier

    original = PixelClassifier._training_sample

    def timed(self, *args):  # type: ignore[no-untyped-def]
        c = cpu()
        out = original(self, *args)
        led.add("training features (bank of the sampled blocks)", cpu() - c, 0, 0.0)
        return out

    PixelClassifier._training_sample = timed  # type: ignore[method-assign]
    try:
        c = cpu()
        segmenter = runner._make_segmenter(image, labels, None, plan, seed)
        fit = cpu() - c - led.cpu["training features (bank of the sampled blocks)"]
    finally:
        PixelClassifier._training_sample = original  # type: ignore[method-assign]
    led.add("forest fit (+ label checks, min-size rule)", fit)
    return segmenter


def score_stages(image: np.ndarray, profile: Any, labels: np.ndarray, **plan_fields: Any) -> Ledger:
    """`score_image(image, profile, labels=labels, **plan_fields)`'s steps, timed apart."""
    from rawsigma.analysis.codecs.registry import compression_ratio, parse_codecs
    from rawsigma.analysis.scoring import per_image as pi
    from rawsigma.analysis.scoring import runner
    from rawsigma.analysis.scoring.inputs import resolve_plan
    from rawsigma.analysis.scoring.reference import codec_result

    led = Ledger()
    plan = resolve_plan(labels, None, None, dict(plan_fields), "score_image")
    clock, notes = pi.StageClock(), []
    with led("input checks"):
        image, labels = runner._check_inputs(image, profile, labels, plan, notes)
    synthesis_seed, _control, classifier_seed = np.random.SeedSequence(plan.seed).spawn(3)
    with led("synthesis (replica draws)"):
        replicas = runner._make_replicas(image, profile, plan, synthesis_seed)
    decoded = {}
    for spec in plan.codecs:
        (codec,) = parse_codecs(spec, profile=profile)
        with led("codecs: encode"):
            data = codec.encode(image)
        with led("codecs: decode"):
            dec = np.asarray(codec.decode(data))
        decoded[spec] = runner._Decoded(dec, compression_ratio(image, data), len(data), "")
    segmenter = _training(led, runner, image, labels, plan, classifier_seed)
    plan, shared = segmenter.plan, segmenter.shared
    assert shared is not None, "the default classifier shares its blocks"
    workers = min(plan.workers, os.cpu_count() or 1)
    measure = "label + size filter + measure"
    with led("raw pass + its 12 scoring channels", 1):
        out, feats = shared.with_features(image, channels_last=False)
    with led(measure):
        raw = pi.outcome_of(out, plan, clock, own=True)
    raw.features = feats
    with led("replica passes + scoring channels + σ fold", len(replicas)):
        masks, feature_sigma = shared.replicas(replicas, workers)
    raw_centroids = pi.centroids(raw.table) if len(raw.table["label"]) else np.zeros((0, 2))
    outcomes = []
    for i in range(len(masks)):
        with led(measure):
            outcome = pi.outcome_of(shared.segment_output(masks[i]), plan, clock, own=True)
        masks[i] = None
        with led("match to raw"):
            outcome.match = pi.match_to_raw(raw, raw_centroids, outcome, plan.max_distance)
        outcomes.append(outcome)
    del replicas
    with led("replica reference (Δ, matched values, nulls)"):
        reference = runner._replica_reference(raw, outcomes, feature_sigma, plan, notes)
    with led("pixel noise σ"):
        scorer = runner._CodecScorer(
            image, reference, pi.raw_noise_sigma(image, profile), segmenter, clock
        )
    reuse = getattr(shared, "bank_channel_buffers", None)  # as the runner (if it can)
    bufs = reuse(image.shape) if reuse is not None else None
    for spec, d in decoded.items():
        with led("codec passes + bank channels", 1):
            given = () if bufs is None else (bufs,)
            out, chans = shared.with_bank_channels(d.image, workers, *given)
        with led("codec feature ε (stats + worst map)"):
            feature_eps, worst = scorer._feature_epsilon(d.image, chans, scorer._eps_scratch)
        with led(measure):
            outcome = pi.outcome_of(out, plan, clock, own=True)
        with led("match to raw"):
            match = pi.match_to_raw(raw, scorer.raw_centroids, outcome, plan.max_distance)
        with led("codec result (verdict, pixel ε map)"):
            codec_result(spec, d, image, scorer.pixel_sigma, reference, outcome, match,
                         feature_eps, worst)  # fmt: skip
    return led


def write_cpu(result: Any) -> float:
    """CPU seconds of writing ``result``'s report (``results.json``, ``objects.csv``,
    ``maps.h5``, figures, html: `write_report`, as the CLI does after scoring)."""
    from rawsigma.analysis.reporting.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        c = cpu()
        write_report(result, Path(tmp) / "out")
        return cpu() - c
