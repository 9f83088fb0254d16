"""Camera presets: data-sheet offset, read noise and gain per camera mode.

The presets live in ``rawsigma/hardware_profiles/cameras/*.toml`` (one cited file per
camera mode, see the README there). They give `rawsigma profile estimate --camera NAME`
the numbers a single image cannot separate (offset and read noise).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

from rawsigma.errors import InputFileError

__all__ = ["CameraPreset", "PresetError", "list_presets", "load_preset"]


class PresetError(InputFileError):
    """Unknown preset, malformed preset file, or a preset that does not fit the image."""


@dataclass(frozen=True)
class CameraPreset:
    """Typical data-sheet numbers of one camera mode.

    Attributes
    ----------
    name : str
        Preset name (``--camera NAME``).
    camera, mode : str
        Camera model and read-out mode.
    bit_depth : int
        ADC bit depth the numbers apply to.
    gain : float
        ADU per e⁻.
    read_noise : float
        ADU rms.
    offset : float or None
        ADU; None when the data sheet does not state it.
    source, note, values : str
        Cited document, derivation notes, and ``"typical"``.
    """

    name: str
    camera: str
    mode: str
    bit_depth: int
    gain: float
    read_noise: float
    offset: float | None
    source: str
    note: str = ""
    values: str = "typical"

    def as_dict(self) -> dict[str, object]:
        """Plain dict for provenance."""
        return {
            "name": self.name,
            "camera": self.camera,
            "mode": self.mode,
            "bit_depth": self.bit_depth,
            "gain_adu_per_e": self.gain,
            "read_noise_adu": self.read_noise,
            "offset_adu": self.offset,
            "source": self.source,
            "note": self.note,
            "values": self.values,
        }


def _parse(text: str, fname: str) -> CameraPreset:
    try:
        d = tomllib.loads(text)
        bits = int(d["bit_depth"])
        off = d.get("offset_adu")
        off = None if off is None else float(off)
        if "conversion_e_per_adu" in d:
            gain = 1.0 / float(d["conversion_e_per_adu"])
        else:
            gain = ((1 << bits) - 1 - (off or 0.0)) / float(d["full_well_e"])
        rn = float(d["read_noise_e"]) * gain
        return CameraPreset(
            name=str(d["name"]),
            camera=str(d["camera"]),
            mode=str(d["mode"]),
            bit_depth=bits,
            gain=float(gain),
            read_noise=float(rn),
            offset=off,
            source=str(d["source"]),
            note=str(d.get("note", "")),
            values=str(d.get("values", "typical")),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise PresetError(f"camera preset {fname}: malformed ({exc})") from None


def list_presets() -> list[CameraPreset]:
    """All shipped presets, sorted by name."""
    folder = resources.files("rawsigma.hardware_profiles") / "cameras"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            out.append(_parse(entry.read_text(encoding="utf-8"), entry.name))
    return sorted(out, key=lambda p: p.name)


def load_preset(name: str) -> CameraPreset:
    """The preset called ``name`` (case-insensitive).

    Raises
    ------
    PresetError
        Unknown name (the message lists the known ones).
    """
    presets = list_presets()
    for p in presets:
        if p.name.lower() == name.strip().lower():
            return p
    raise PresetError(
        f"unknown camera preset {name!r}; known: {', '.join(p.name for p in presets)} "
        "(rawsigma profile estimate --camera list)"
    )
