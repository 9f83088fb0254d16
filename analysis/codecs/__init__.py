"""Codecs scored against the raw noise: the registry and the built-in codecs.

`parse_codecs` and `register_codec`; 8-bit, JPEG, JPEG XL/2000, PNG, zstd, the noise codec.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "Codec": "base",
    "CodecError": "base",
    "CodecNeedsProfileError": "base",
    "CodecUnavailableError": "base",
    "EightBitCodec": "builtin",
    "Jpeg2000Codec": "builtin",
    "JpegCodec": "builtin",
    "JpegLSCodec": "builtin",
    "JpegXLCodec": "builtin",
    "LercCodec": "builtin",
    "NoiseCodecAdapter": "builtin",
    "Param": "base",
    "ZstdCodec": "builtin",
    "available_codecs": "registry",
    "check_codec_specs": "registry",
    "codec_available": "registry",
    "compression_ratio": "base",
    "library_available": "builtin",
    "parse_codecs": "registry",
    "register_codec": "base",
    "split_codec_specs": "registry",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
