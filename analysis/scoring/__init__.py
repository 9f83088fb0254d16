"""The method: the standard score ε and Δ, the calibrated null and verdict.

Also the run checks, the scoring plan and the pipeline that runs it (`score_image`).

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "ANGLE_PARAMS": "standard_score",
    "CodecResult": "runner",
    "EPS_MEANING": "score_maps",
    "FORMAT": "score_maps",
    "FeatureStats": "standard_score",
    "MAPS_FILE": "score_maps",
    "MARGIN": "nullstats",
    "MIN_SIZE_FRACTION": "runchecks",
    "NON_INDEPENDENT_NOTE": "standard_score",
    "OPERATOR_SIGMAS": "operators",
    "ObjectScore": "standard_score",
    "OperatorEpsilon": "operators",
    "ParamNull": "nullstats",
    "ScorePlan": "plans",
    "ScoreResult": "runner",
    "TOLERANCE_SWEEPS": "plans",
    "TRIM": "nullstats",
    "TomoPlan": "tomo_runner",
    "TomoScoreResult": "tomo_runner",
    "TomoVersion": "tomo_runner",
    "calibrated_test": "nullstats",
    "check_projections": "tomo_runner",
    "check_raw_image": "runner",
    "count_warnings": "runchecks",
    "default_min_size": "runchecks",
    "delta": "standard_score",
    "delta_stats": "standard_score",
    "epsilon": "standard_score",
    "epsilon_ci": "standard_score",
    "epsilon_ci_factors": "standard_score",
    "family_summary": "nullstats",
    "feature_epsilon": "standard_score",
    "floored_sigma": "nullstats",
    "load_model": "runner",
    "loo_null": "nullstats",
    "matched_values": "standard_score",
    "matching_test": "nullstats",
    "operator_epsilon": "operators",
    "operator_maps": "operators",
    "operator_table_markdown": "operators",
    "parameter_quantum": "nullstats",
    "quantisation_note": "runchecks",
    "read_score_maps": "score_maps",
    "replica_sigma": "standard_score",
    "robust_location": "nullstats",
    "score_globals": "standard_score",
    "score_image": "runner",
    "score_objects": "standard_score",
    "score_tomo": "tomo_runner",
    "size_summary": "runchecks",
    "tolerance_best": "standard_score",
    "trimmed_se_unit": "nullstats",
    "verdict": "standard_score",
    "worst_feature_map": "standard_score",
    "write_score_maps": "score_maps",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
