"""The recommend-and-train wizard and the first-run experience.

``install_wizard(window)`` adds File → New training wizard… (Ctrl+N) to the main window;
``open_wizard(window)`` opens it; ``maybe_open_on_first_launch(window)`` opens it at start-up until the
user finishes it or ticks "don't show again" (an INI flag in the app's settings file). The wizard's
pages (torch-free at import, like the rest of the GUI) load only when it is first opened.
"""

from __future__ import annotations

from typing import Any

SHOW_ON_START_KEY = "wizard/show_on_start"


def _settings():
    from medseg_gui.gui.main_window import settings

    return settings()


def show_on_start() -> bool:
    """True until the wizard was finished once or the user ticked "don't show again"."""
    value = _settings().value(SHOW_ON_START_KEY, True)
    return value if isinstance(value, bool) else str(value).lower() not in ("false", "0", "no")


def set_show_on_start(show: bool) -> None:
    s = _settings()
    s.setValue(SHOW_ON_START_KEY, bool(show))
    s.sync()


def open_wizard(window: Any, **kwargs: Any):
    """Open a new wizard beside ``window`` and return it.

    Not modal: a run may take hours, and the main window (Viewer, Hardware, the runs) stays usable
    meanwhile. The wizard works on its own copy of the configuration, so the two cannot clash.
    """
    from medseg_gui.gui.wizard.wizard import TrainingWizard

    old = getattr(window, "wizard", None)
    if old is not None and old.isVisible():
        old.raise_()
        old.activateWindow()
        return old
    wizard = TrainingWizard(window, **kwargs)

    def closed(result: int) -> None:
        if wizard.dataset_page.dont_show.isChecked() or result == wizard.DialogCode.Accepted:
            set_show_on_start(False)

    wizard.finished.connect(closed)
    window.wizard = wizard
    wizard.setModal(False)
    wizard.show()
    return wizard


def maybe_open_on_first_launch(window: Any, **kwargs: Any):
    """The first-run experience: open the wizard if it is still due; returns it, or None."""
    if not show_on_start():
        return None
    return open_wizard(window, **kwargs)


def install_wizard(window: Any) -> None:
    """Add File → New training wizard… (Ctrl+N) at the top of the main window's File menu."""
    from PySide6.QtGui import QAction, QKeySequence

    action = QAction("New training &wizard…", window)
    action.setShortcut(QKeySequence(QKeySequence.StandardKey.New))
    action.setStatusTip("Choose a dataset, get a configuration that fits this machine, train, view the masks")
    action.triggered.connect(lambda _=False: open_wizard(window))
    file_menu = window.menuBar().actions()[0].menu()
    first = file_menu.actions()[0] if file_menu.actions() else None
    file_menu.insertAction(first, action)
    if first is not None:
        file_menu.insertSeparator(first)
    window.wizard_action = action
    window.wizard = None
