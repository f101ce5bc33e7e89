"""Guards the PySide6 pin in pyproject.toml.

PySide6 6.12.0 drops a reference to ``None`` on every void call (``setEnabled``, ``setText``…) and to
the value passed through ``Signal(object)``; on Python < 3.12, where None/True are not immortal, the
app aborts with "none_dealloc" after a few thousand calls. This test fails on such a build.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="None and True are immortal on 3.12+")


class _Emitter(QObject):
    value = Signal(object)


def test_void_calls_and_object_signals_keep_refcounts(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    emitter = _Emitter()
    received = []
    emitter.value.connect(received.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        label.setEnabled(True)
        label.setText("x")
        emitter.value.emit(True)
    received.clear()
    assert sys.getrefcount(None) >= none_before - 5
    assert sys.getrefcount(True) >= true_before - 5
