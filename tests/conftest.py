"""Shared pytest configuration: offscreen Qt, paths to the shared test data."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The HDF5 probe (`rawsigma.h5probe`: a child process per HDF5 file a command opens,
# ~0.3 s each) would add minutes over the suite's hundreds of in-process profile loads;
# tests/test_h5probe.py and the HDF5 fuzz tests turn it on.
os.environ.setdefault("RAWSIGMA_H5_PROBE", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real camera and microscopy data (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


def _volume_feature_epsilon(raw, reps, codecs, sigmas, spacing):
    """In-memory feature ε of volumes: the scoring features of whole volumes
    (`feature_bank`), the replicas' σ (`FeatureStats`), then `feature_epsilon` and
    `worst_feature_map` per codec. Returns ``(names, {codec: (scores, worst map)})``."""
    from rawsigma.analysis.scoring import standard_score as sc
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_bank

    rel = tuple(s / min(spacing) for s in spacing)

    def feats(v):
        return feature_bank(v, "ilastik", sigmas=sigmas, features=SCORING_FEATURES,
                            spacing=rel, n_workers=1)  # fmt: skip

    fr, names = feats(raw)
    stats = sc.FeatureStats()
    for r in reps:
        stats.add(feats(r)[0])
    sigma = stats.sigma().astype(np.float32)
    out = {}
    for k, v in codecs.items():
        fc = feats(v)[0]
        fe = sc.feature_epsilon(fr, sigma, fc, names)
        out[k] = (fe, sc.worst_feature_map(fe, fr, sigma, fc, names))
    return names, out


@pytest.fixture(scope="session")
def volume_feature_epsilon():
    """The in-memory feature ε of volumes (the reference of the chunked and lazy paths)."""
    return _volume_feature_epsilon


def _random_context_hist(rng: np.random.Generator, trial: int) -> np.ndarray:
    from rawsigma.analysis.noisecodec import pyramid

    scale = (1, 7, 300, 10**6)[trial % 4]
    p = rng.random() * 0.9 + 0.05
    h = rng.geometric(p, (pyramid.N_CTX_ALL, pyramid.N_SYM)) * scale
    h = h * (rng.random(h.shape) < rng.random())
    if trial % 3 == 0:
        h[rng.random(pyramid.N_CTX_ALL) < 0.5] = 0  # unused contexts share one table
    return h


@pytest.fixture(scope="session")
def context_histogram():
    """``f(rng, trial)``: a random codec context histogram, its scale and sparsity by trial."""
    return _random_context_hist


@pytest.fixture(autouse=True)
def _free_cores_on_main_thread():
    """Collect the Micro-Manager cores a test left behind, here on the main thread.

    Left to the garbage collector, a core can be freed on a camera callback thread
    of another core, which aborts the interpreter (seen in CI: pymmcore-plus
    ``onPropertyChanged`` "Garbage-collecting", SIGABRT).
    """
    yield
    core_module = sys.modules.get("rawsigma.acquire.core")
    if core_module is not None and core_module.cores_alive():
        gc.collect()


# The fast lane, `python -m pytest -m "not slow"`, leaves these out (CI runs them all).
# Measured with `--durations=0` on the shared 2-core machine under load (issue 12):
# every test function one of whose cases took >= 3 s (setup + call) is here, plus
# the tests marked `@pytest.mark.slow` in their files. Keep one list: add a test
# here (or decorate it) when it becomes slow.
SLOW_TESTS = frozenset(
    {
        "test_acquire_memory.py::test_stack_runner_memory_and_convergence",
        "test_acquire_memory.py::test_sweep_peak_memory_does_not_grow_with_frames",
        "test_acquire_sweep.py::test_exposure_control_and_saved_frames",
        "test_cli_profile.py::test_show_prints_summary_and_writes_png",
        "test_cli_score.py::test_score_estimated_profile",
        "test_cli_score.py::test_score_with_plug_in_model_file",
        "test_cli_score.py::test_score_writes_report_and_refuses_overwrite",
        "test_containers_interop.py::test_tifffile_with_rawsigma_decoder_gets_the_frames",
        "test_containers_interop.py::test_zarr_reads_through_the_entry_point",
        "test_dark_current.py::test_dark_current_of_the_emva_ccd",
        "test_datasets.py::test_dark_current_from_a_recorded_dataset",
        "test_datasets.py::test_ome_zarr_and_ndtiff_record_the_same_frames",
        "test_datasheet.py::test_report_equals_show",
        "test_datasheet.py::test_report_html_only_and_estimated_profile",
        "test_demo.py::test_demo_fast_writes_reports",
        "test_demo.py::test_demo_full_verdicts",
        "test_emva.py::test_frame_pairs_full_well_clips_before_adc",
        "test_examples.py::test_example_runs",
        "test_faults_inputs.py::test_score_defect_warning_in_report",
        "test_faults_inputs.py::test_score_runs_with_comma_codec_spec",
        "test_faults_process.py::test_ctrl_c_acquire_stack_writes_nothing",
        "test_faults_process.py::test_ctrl_c_calibrate_truthful",
        "test_faults_process.py::test_ctrl_c_zarr_compression_is_quiet",
        "test_faults_process.py::test_debug_flag_shows_the_traceback_in_the_console_script",
        "test_faults_process.py::test_second_writer_refused_with_pid",
        "test_fit_flicker.py::test_gain_survives_flicker_and_is_flagged",
        "test_fit_maps.py::test_scmos_512_acceptance",
        "test_fit_maps.py::test_small_scmos_maps_and_defects",
        "test_forest_infer.py::test_same_probabilities_and_labels_as_sklearn",
        "test_framesave_ome.py::test_saved_sweep_is_one_ome_series_with_its_metadata",
        "test_gui_cli.py::test_make_window_offline_and_with_sim_rig",
        "test_gui_cli.py::test_rawsigma_gui_quits_on_ctrl_c_and_sigterm",
        "test_gui_cli.py::test_rawsigma_gui_starts_and_quits",
        "test_gui_screens.py::test_screenshot_live_and_calibration",
        "test_gui_screens.py::test_screenshot_profile_viewer",
        "test_gui_stack.py::test_stack_panel_relative_error_convergence",
        "test_gui_sweep.py::test_gui_pause_resume_stop_leaves_resumable_partial",
        "test_gui_sweep.py::test_gui_sweep_equals_runner_and_shows_profile_maps",
        "test_jitcache.py::test_kernels_cached_per_machine_in_the_user_cache",
        "test_napari_plugin.py::test_score_maps_file_round_trips",
        "test_noisecodec_scoring.py::test_noise_step2_within_noise_on_real_crop",
        "test_packaging.py::test_wheel_contains_every_module",
        "test_public_api.py::test_public_names_resolve_in_a_fresh_process",
        "test_runner.py::test_foreground_class_option",
        "test_runner.py::test_plug_in_model_and_no_objects",
        "test_runner.py::test_results_json_and_report",
        "test_runner.py::test_segmentation_finds_the_phantom",
        "test_runner.py::test_tolerance_search_noise",
        "test_stacks.py::test_emva_reference_dataset",
        "test_verdict.py::test_null_false_alarm_rate_at_most_5_percent",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of `SLOW_TESTS` (all their parametrised cases) ``slow``."""
    for item in items:
        name = f"{item.path.name}::{item.originalname}"
        if name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
