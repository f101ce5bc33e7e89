"""The mask viewer page (``ViewerWidget``): canvas, side panel and background tasks."""

from medseg_gui.gui.viewer.viewer_widget import ViewerWidget

__all__ = ["ViewerWidget"]
