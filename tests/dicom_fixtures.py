"""Builders for small DICOM fixtures, made from the real files pydicom ships (tests import these).

Real headers keep the fixtures honest (transfer syntax, functional groups, SEG structure); only the
geometry, UIDs and pixel data are replaced so each test knows the exact expected result.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def make_ct_series(folder: Path, slices: Sequence[np.ndarray], z_positions: Sequence[float],
                   series_uid: str, *, names: Sequence[str] | None = None, slope: float = 1.0,
                   intercept: float = -1024.0, uid_prefix: str = "1.2.826.0.1.3680043.9.7777",
                   sop_uids: Sequence[str] | None = None, xy: tuple[float, float] = (-100.0, -120.0),
                   patient_id: str | None = None) -> list[str]:
    """Write one CT slice per array (stored values, int16) at the given z; return the SOP UIDs."""
    import pydicom
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    folder.mkdir(parents=True, exist_ok=True)
    uids = []
    for i, (arr, z) in enumerate(zip(slices, z_positions)):
        ds = copy.deepcopy(template)
        arr = np.asarray(arr, dtype=np.int16)
        ds.Rows, ds.Columns = arr.shape
        ds.PixelData = arr.tobytes()
        ds.ImagePositionPatient = [xy[0], xy[1], float(z)]
        ds.InstanceNumber = i + 1
        ds.SeriesInstanceUID = series_uid
        uid = sop_uids[i] if sop_uids else f"{uid_prefix}.{zlib.crc32(series_uid.encode()) % 100000}.{i + 1}"
        if patient_id is not None:
            ds.PatientID = patient_id
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.SliceThickness = 2.0
        name = names[i] if names else f"IM{i:04d}.dcm"
        ds.save_as(folder / name)
        uids.append(uid)
    return uids


def make_seg(path: Path, frames: Sequence[tuple[int, float, np.ndarray]], segment_labels: Sequence[str],
             *, fractional: bool = False, series_uid: str | None = None,
             source_uids: Sequence[str | None] | None = None) -> None:
    """Write a DICOM SEG from liver_1frame.dcm's header with the given frames.

    ``frames`` holds (segment number, z position, 2D mask); a fractional SEG stores masks as
    0..255 values (MaximumFractionalValue 255), a binary one packs 0/1 bits.
    """
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import pack_bits
    from pydicom.sequence import Sequence as DicomSequence

    ds = pydicom.dcmread(get_testdata_file("liver_1frame.dcm"))
    masks = np.stack([np.asarray(m) for _, _, m in frames])
    ds.Rows, ds.Columns = masks.shape[1:]
    ds.NumberOfFrames = len(frames)
    seg_template = ds.SegmentSequence[0]
    segments = []
    for number, label in enumerate(segment_labels, start=1):
        item = copy.deepcopy(seg_template)
        item.SegmentNumber = number
        item.SegmentLabel = label
        segments.append(item)
    ds.SegmentSequence = DicomSequence(segments)
    frame_template = ds.PerFrameFunctionalGroupsSequence[0]
    groups = []
    for i, (number, z, _) in enumerate(frames):
        item = copy.deepcopy(frame_template)
        item.SegmentIdentificationSequence[0].ReferencedSegmentNumber = number
        item.PlanePositionSequence[0].ImagePositionPatient = [-100.0, -120.0, float(z)]
        src = item.DerivationImageSequence[0].SourceImageSequence[0]
        if source_uids is not None and source_uids[i]:
            src.ReferencedSOPInstanceUID = source_uids[i]
        else:
            del item.DerivationImageSequence
        groups.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    if series_uid:
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID = series_uid
    if fractional:
        ds.SegmentationType = "FRACTIONAL"
        ds.SegmentationFractionalType = "PROBABILITY"
        ds.MaximumFractionalValue = 255
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = masks.astype(np.uint8).tobytes()
    else:
        ds.PixelData = pack_bits((masks > 0).astype(np.uint8))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.9.7777.99." + str(
        zlib.crc32(str(path).encode()) % 10**8)
    ds.save_as(path)
