"""Declarative, serialisable plan of one scoring run (written next to its results)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["TOLERANCE_SWEEPS", "ScorePlan"]

#: Knob values swept by the tolerance search, from gentle to aggressive.
TOLERANCE_SWEEPS: dict[str, list[str]] = {
    "jpeg": [f"jpeg@{r}" for r in (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)],
    # the codec refuses steps beyond noisecodec.codec.MAX_STEP (2.5: biased beyond)
    "noise": [f"noise:step={s}" for s in (0.5, 1, 1.5, 2, 2.5)],
    "jpegxl": [f"jpegxl@{r}" for r in (2, 3, 5, 7, 10, 15, 20, 30, 50)],
    "jpeg2000": [f"jpeg2000@{r}" for r in (2, 3, 5, 7, 10, 15, 20, 30, 50)],
    "lerc": [f"lerc:maxerr={e}" for e in (0.5, 1, 2, 3, 4, 6, 8, 16)],
    "jpegls": [f"jpegls:near={n}" for n in (1, 2, 3, 4, 6, 8, 12)],
}


class ScorePlan(BaseModel):
    """What a scoring run does; validated on construction, JSON round-trips.

    Parameters
    ----------
    codecs : list of str
        Codec specs (``"8bit"``, ``"jpeg@10"``, ``"noise:step=2"``, ...); the pseudo
        codec ``"replica"`` scores one extra, held-out replica as a control.
    n_replicas : int
        Raw-equivalent replicas used for σ_raw (≥ 2; the paper uses 10).
    seed : int
        Root seed; synthesis, control replica and classifier seeds derive from it.
    centre : {"observed", "denoised"}
        Synthesis centre.
    max_distance : float
        Matching radius, px.
    tolerance_search : list of str
        Codec families to sweep (keys of :data:`TOLERANCE_SWEEPS`).
    classifier_preset : {"weka", "ilastik"}
        Random-forest preset.
    feature_preset : {"weka", "ilastik"}
        Feature bank preset of the classifier.
    score_sigmas : list of float
        Scales (px) of the feature maps whose per-pixel ε is reported (Gaussian
        smoothing, LoG, gradient magnitude and DoG at each). Default 1.0, 1.6, 3.5: the
        ilastik bank's scales in [1, 4] (`features.SCORING_SIGMAS`), so that with the
        default classifier the scored features are the model's own input channels,
        taken from each image's segmentation pass; with the weka preset, a plug-in
        model or a volume they are computed at the same scales (the same channels in
        every run). Earlier versions used 1, 2, 4 (their ``results.json`` has no
        ``provenance.scoring_features``).
    threshold : float
        Probability threshold of the foreground class.
    workers : int
        Parallel workers (threads) for replicas and codecs.
    model : str or None
        ``"module:function"`` segmenter used instead of the trained classifier.
    max_samples_per_class : int
        The classifier trains on at most this many annotated pixels per class (random
        subset, seeded): dense annotations derived from ground truth would otherwise
        make training the slowest step without changing the segmentation much.
    foreground_class : int
        Annotation class that is the foreground (rawsigma convention 2, background 1;
        ilastik/Weka exports often use 1 for the first class drawn).
    min_size : int or None
        Objects smaller than this many pixels are discarded before measuring (ImageJ
        Analyze Particles ``size=min-Infinity``); 0 keeps every object (the paper's
        setting). Single hot, RTS or heavy-tail read-noise pixels otherwise make the
        object count a count of noise speckles. None (default): derived from the
        annotations (:func:`rawsigma.analysis.scoring.runchecks.default_min_size`; 0 with a
        plug-in model); the run records the value used and the rule.
    n_estimators : int or None
        Trees of the random forest (default: the preset's); fewer trees make
        benchmarks faster.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    codecs: list[str] = Field(default_factory=lambda: ["8bit", "jpeg@10", "jpeg@100"])
    n_replicas: int = Field(10, ge=2, le=1000)
    seed: int = 0
    centre: Literal["observed", "denoised"] = "observed"
    max_distance: float = Field(3.0, gt=0)
    tolerance_search: list[str] = Field(default_factory=list)
    classifier_preset: Literal["weka", "ilastik"] = "ilastik"
    feature_preset: Literal["weka", "ilastik"] = "ilastik"
    # = features.SCORING_SIGMAS (test_shared_filters pins it; not imported: no numpy here)
    score_sigmas: list[float] = Field(default_factory=lambda: [1.0, 1.6, 3.5])
    threshold: float = Field(0.5, gt=0, lt=1)
    workers: int = Field(2, ge=1, le=64)
    model: str | None = None
    min_size: int | None = Field(None, ge=0)
    n_estimators: int | None = Field(None, ge=1)
    foreground_class: int = Field(2, ge=1)
    max_samples_per_class: int = Field(20_000, ge=100)

    @field_validator("tolerance_search")
    @classmethod
    def _known_families(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if f not in TOLERANCE_SWEEPS]
        if bad:
            raise ValueError(
                f"unknown tolerance-search families {bad}; known: {sorted(TOLERANCE_SWEEPS)}"
            )
        return v

    @field_validator("codecs")
    @classmethod
    def _strip(cls, v: list[str]) -> list[str]:
        from rawsigma.analysis.codecs.registry import split_codec_specs

        # regroup "key=value" continuations: ["noise:step=2", "dither=1"] is ONE codec
        v = [s.strip() for s in v if s.strip()]
        if v:
            v = split_codec_specs(v)
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate codec specs in {v}")
        return v
