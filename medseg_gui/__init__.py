"""medseg-gui: SegFormer training that fits your GPU, with live plots and a mask viewer."""

__version__ = "0.1.0"
