"""Which compressed DICOM opens, through which decoder, under which licence.

Scanners and PACS send compressed pixel data as often as raw. pydicom decodes through plugins; we
install only permissively licensed ones, because the frozen bundle is MIT and ships every decoder
inside it. The table below is what the bundle and ``pip install medseg-gui`` open:

====================================  ==============================  ========================================
Transfer syntax                       Decoders (pydicom plugins)      Licence
====================================  ==============================  ========================================
Explicit/Implicit VR, Deflated        pydicom itself                  MIT
RLE Lossless (1.2.5)                  pydicom's own numpy decoder     MIT
JPEG Baseline 8-bit (.4.50)           Pillow (libjpeg-turbo), GDCM    Pillow: MIT-CMU + IJG; GDCM: BSD-3
JPEG Extended 8-bit (.4.51)           Pillow, GDCM                    as JPEG Baseline
JPEG Lossless (.4.57, .4.70)          GDCM                            BSD-3 (GDCM), Apache-2.0 (python-gdcm)
JPEG-LS (.4.80, .4.81)                pyjpegls (CharLS), GDCM         MIT (pyjpegls), BSD-3 (CharLS)
JPEG 2000 (.4.90, .4.91)              Pillow (OpenJPEG), GDCM         MIT-CMU (Pillow), BSD-2 (OpenJPEG)
====================================  ==============================  ========================================

python-gdcm is the only permissive decoder pydicom knows for JPEG Lossless (process 14, what most CT
and MR archives use); the other, pylibjpeg-libjpeg, is GPL-3 and must never be installed into the
bundle (packaging/medseg-gui.spec excludes its module). pyjpegls comes with highdicom. Not covered:
12-bit JPEG Extended (.4.51 with BitsStored 12: pydicom's GDCM and Pillow plugins refuse it, and its
only other decoder is that GPL one), High-Throughput JPEG 2000 (.4.201-.4.203; needs
pylibjpeg-openjpeg) and JPIP/MPEG video syntaxes. Such files get one line saying to decompress them.
"""

from __future__ import annotations

from typing import Any

JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"

#: pydicom decoder plugins we ship, with their licences (GPL ones are never in this list).
PERMISSIVE_PLUGINS: dict[str, str] = {
    "pydicom": "MIT",
    "pillow": "MIT-CMU (Pillow), IJG/BSD-3 (libjpeg-turbo), BSD-2 (OpenJPEG)",
    "gdcm": "Apache-2.0 (python-gdcm), BSD-3 (GDCM, CharLS), BSD-2 (OpenJPEG), IJG (libjpeg)",
    "pyjpegls": "MIT (pyjpegls), BSD-3 (CharLS)",
}

#: Transfer syntaxes that open here and the plugins (of PERMISSIVE_PLUGINS) that decode them.
COMPRESSED_SYNTAXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "1.2.840.10008.1.2.5": ("RLE Lossless", ("pydicom",)),
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", ("pillow", "gdcm")),
    JPEG_EXTENDED: ("JPEG Extended", ("gdcm", "pillow")),  # 8-bit samples only, see the table
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless", ("gdcm",)),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless SV1", ("gdcm",)),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless", ("pyjpegls", "gdcm")),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Near-Lossless", ("pyjpegls", "gdcm")),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", ("pillow", "gdcm")),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", ("pillow", "gdcm")),
}


def available_decoders(transfer_syntax_uid: str) -> tuple[str, ...]:
    """The pydicom plugins that can decode this syntax here, now (empty when none is installed)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(str(transfer_syntax_uid))
    if not uid.is_compressed:
        return ("pydicom",)
    try:
        return tuple(get_decoder(uid).available_plugins)
    except NotImplementedError:  # a syntax pydicom has no decoder for at all (e.g. MPEG video)
        return ()


def missing_decoder_hint(ds: Any) -> str:
    """What to tell a user whose file did not decode: which compression it is, and what to do."""
    uid = str(getattr(getattr(ds, "file_meta", None), "get", lambda *_: "")("TransferSyntaxUID", "") or "")
    name, plugins = COMPRESSED_SYNTAXES.get(uid, ("", ()))
    if not name:
        return (f"its compression (transfer syntax {uid or 'unknown'}) is not one this program opens — "
                "decompress it first (e.g. with dcmdjpeg or gdcmconv --raw)")
    if not available_decoders(uid):
        return (f"its {name} compression needs the {' or '.join(plugins)} decoder, which is not installed — "
                "reinstall medseg-gui with its dependencies, or decompress the file first")
    if uid == JPEG_EXTENDED and int(getattr(ds, "BitsStored", 8) or 8) > 8:
        return ("12-bit JPEG Extended is not opened here (its only decoder for Python is GPL-licensed) — "
                "decompress the file first, e.g. gdcmconv --raw in.dcm out.dcm")
    return f"its {name} data did not decode — re-copy or re-export the file, or decompress it first"
