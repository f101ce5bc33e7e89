"""The recommend-and-train wizard and the first-run experience.

The main window's File → New training wizard… (Ctrl+N) opens it with ``open_wizard(window, existing)``;
``maybe_open_on_first_launch(window)`` opens it at start-up until the user finishes it or ticks
"don't show again" (an INI flag in the app's settings file). The wizard's pages (torch-free at
import, like the rest of the GUI) load only when it is first opened.
"""

from __future__ import annotations

from typing import Any

from medseg_gui.gui.settings import settings as _settings

SHOW_ON_START_KEY = "wizard/show_on_start"


def show_on_start() -> bool:
    """True until the wizard was finished once or the user ticked "don't show again"."""
    value = _settings().value(SHOW_ON_START_KEY, True)
    return value if isinstance(value, bool) else str(value).lower() not in ("false", "0", "no")


def set_show_on_start(show: bool) -> None:
    s = _settings()
    s.setValue(SHOW_ON_START_KEY, bool(show))
    s.sync()


def open_wizard(window: Any, existing: Any = None, **kwargs: Any):
    """Open a new wizard beside ``window`` (or raise ``existing`` while it is open) and return it.

    Not modal: a run may take hours, and the main window (Viewer, Hardware, the runs) stays usable
    meanwhile. The wizard works on its own copy of the configuration, so the two cannot clash. The
    main window keeps the one it opened (``MainWindow.open_wizard``).
    """
    from medseg_gui.gui.wizard.wizard import TrainingWizard

    old = existing
    if old is not None and old.isVisible():
        old.raise_()
        old.activateWindow()
        return old
    wizard = TrainingWizard(window, **kwargs)

    def closed(result: int) -> None:
        if wizard.dataset_page.dont_show.isChecked() or result == wizard.DialogCode.Accepted:
            set_show_on_start(False)

    wizard.finished.connect(closed)
    wizard.setModal(False)
    wizard.show()
    return wizard


def maybe_open_on_first_launch(window: Any, **kwargs: Any):
    """The first-run experience: open the wizard if it is still due; returns it, or None."""
    if not show_on_start():
        return None
    return window.open_wizard(**kwargs)
