"""Images and masks: reading (PNG/TIFF, DICOM, NIfTI), windowing, writing, overlays, per-class scores."""
