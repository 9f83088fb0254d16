"""The EMVA 1288 summary table of a profile, shared by ``profile show`` and the report.

:func:`datasheet_rows` turns ``profile.emva`` (and the dark current, when measured)
into rows ``(quantity, symbol, value, se, unit)``; :func:`format_row` formats them the
same way everywhere, so the HTML data sheet and the terminal show equal numbers. A
quantity that could not be estimated has ``value`` None and the reason in ``note``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DatasheetRow", "datasheet_rows", "format_number", "format_row"]


@dataclass
class DatasheetRow:
    """One line of the data sheet: ``value ± se unit`` or a reason it is missing."""

    quantity: str
    symbol: str
    value: float | None
    se: float | None
    unit: str
    note: str = ""


# (emva key, se key, quantity, symbol, unit)
_ROWS = (
    ("K", "K_se", "overall system gain", "K", "DN/e-"),
    ("eta", None, "quantum efficiency", "η", ""),
    ("sigma_d", "sigma_d_se", "temporal dark noise", "σ_d", "e-"),
    ("sigma_y_dark", None, "temporal dark noise", "σ_y.dark", "DN"),
    ("DSNU1288", "DSNU1288_se", "dark signal non-uniformity", "DSNU1288", "e-"),
    ("PRNU1288", "PRNU1288_se", "photo-response non-uniformity", "PRNU1288", "%"),
    ("mu_e_sat", "mu_e_sat_se", "saturation capacity", "μ_e.sat", "e-"),
    ("mu_y_sat", None, "saturation", "μ_y.sat", "DN"),
    ("SNR_max", "SNR_max_se", "maximum signal-to-noise ratio", "SNR_max", ""),
    ("SNR_max_dB", None, "maximum signal-to-noise ratio", "SNR_max", "dB"),
    ("mu_e_min", None, "absolute sensitivity threshold", "μ_e.min", "e-"),
    ("mu_p_min", None, "absolute sensitivity threshold", "μ_p.min", "photons"),
    ("DR", "DR_se", "dynamic range", "DR", ""),
    ("DR_dB", "DR_dB_se", "dynamic range", "DR", "dB"),
    ("LE", "LE_se", "linearity error", "LE", "%"),
)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def datasheet_rows(profile: Any) -> list[DatasheetRow]:
    """EMVA 1288 summary rows of ``profile`` (plus dark current and gain map).

    Rows for numbers in ``emva["not_estimated"]`` have ``value=None`` and the reason
    as ``note``; ``sigma_d`` reported as an upper limit says so in ``note``.
    """
    e = profile.emva or {}
    missing = e.get("not_estimated") or {}
    rows: list[DatasheetRow] = []
    for key, se_key, quantity, symbol, unit in _ROWS:
        v = _num(e.get(key))
        se = _num(e.get(se_key)) if se_key else None
        note = ""
        if v is None:
            note = "not estimated: " + str(missing.get(key, e.get("error", "not in the profile")))
        elif key == "sigma_d" and e.get("sigma_d_upper_limit"):
            note = "upper limit (dark variance < 0.24 DN²)"
        elif key == "PRNU1288" and e.get("PRNU_note"):
            note = str(e["PRNU_note"])
        elif key == "K" and e.get("K_method"):
            note = str(e["K_method"])
        rows.append(DatasheetRow(quantity, symbol, v, se, unit, note))
    if profile.dark_current is not None:
        di = profile.dark_info
        exps = ", ".join(f"{1000 * t:g}" for t in di.get("exposures_s", []))
        rows.append(
            DatasheetRow(
                "dark current (median)",
                "μ_I",
                _num(di.get("median_e_s")),
                None,
                "e-/s",
                f"{_num(di.get('median_adu_s')) or 0:.4g} DN/s; exposures {exps} ms; "
                f"{di.get('hot_pixels', 0)} hot pixels",
            )
        )
    else:
        rows.append(
            DatasheetRow(
                "dark current",
                "μ_I",
                None,
                None,
                "e-/s",
                "not estimated: needs dark stacks at >= 2 exposure times (--dark-exposures)",
            )
        )
    gm = profile.provenance.get("gain_map")
    if gm:
        rows.append(
            DatasheetRow(
                "per-pixel gain map",
                "g_i",
                None,
                None,
                "",
                f"{gm}: {profile.provenance.get('gain_map_reason', '')}",
            )
        )
    return rows


def format_number(v: float | None) -> str:
    """4 significant digits (the format of every number in show and report)."""
    if v is None:
        return "—"
    return f"{v:.4g}"


def format_row(row: DatasheetRow) -> str:
    """``value ± se`` (or ``—`` when not estimated), without the unit."""
    if row.value is None:
        return "—"
    if row.se is None:
        return format_number(row.value)
    return f"{format_number(row.value)} ± {format_number(row.se)}"
