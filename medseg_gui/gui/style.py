"""The app's look: Fusion style, one palette and one style sheet, so every platform renders the same.

Colours are named here once; widgets refer to them through object names and dynamic properties
(``role="muted"``, ``differs="true"``) rather than carrying their own colour code.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from medseg_gui.gui.resources import RESOURCES

ACCENT = "#2f6fdf"
ACCENT_DARK = "#2458b8"
TEXT = "#1f2933"
MUTED = "#667385"
WINDOW = "#f3f5f8"
CARD = "#ffffff"
BORDER = "#dde3ea"
SIDEBAR = "#1b2431"
SIDEBAR_TEXT = "#c4cedb"
SIDEBAR_SELECTED = "#2b3a50"
ERROR = "#c62828"
ERROR_BG = "#fdecea"
WARN_TEXT = "#7a4f00"
WARN_BG = "#fff5e1"
WARN_BORDER = "#f1c36d"
OK_TEXT = "#1e6b3a"
OK_BG = "#e8f5ec"
DIFF = "#a35f00"

# Series colours (VRAM bar segments and sparklines).
OURS = ACCENT
OTHERS = "#e8913a"
FREE = "#e4e9f0"
UTIL = ACCENT
VRAM = "#8a4fd1"
TEMP = "#e0662f"

_RES = RESOURCES.as_posix()

STYLE_SHEET = f"""
QMainWindow, QWidget#page {{ background: {WINDOW}; }}
QWidget {{ color: {TEXT}; }}
QToolTip {{ color: {TEXT}; background: {CARD}; border: 1px solid {BORDER}; padding: 4px; }}

QListWidget#sidebar {{
    background: {SIDEBAR}; border: none; outline: none; padding-top: 8px;
    color: {SIDEBAR_TEXT};
}}
QListWidget#sidebar::item {{ padding: 10px 12px; margin: 2px 8px; border-radius: 6px; }}
QListWidget#sidebar::item:hover {{ background: #243146; }}
QListWidget#sidebar::item:selected {{ background: {SIDEBAR_SELECTED}; color: #ffffff; }}
QLabel#brand {{ color: #ffffff; font-weight: 600; }}
QLabel#brandSub {{ color: #8796ab; }}
QWidget#sidebarBox {{ background: {SIDEBAR}; }}

QFrame[card="true"] {{ background: {CARD}; border: 1px solid {BORDER}; border-radius: 10px; }}
QLabel[role="pageTitle"] {{ font-weight: 600; }}
QLabel[role="cardTitle"] {{ font-weight: 600; }}
QLabel[role="muted"] {{ color: {MUTED}; }}
QLabel[role="caption"] {{ color: {MUTED}; }}
QLabel[role="statValue"] {{ font-weight: 600; }}
QLabel[role="pill"] {{
    background: #e6eefc; color: {ACCENT_DARK}; border-radius: 9px; padding: 2px 10px; font-weight: 600;
}}
QLabel[role="cpuPill"] {{
    background: #eef0f3; color: #4a5565; border-radius: 9px; padding: 2px 10px; font-weight: 600;
}}
QLabel[role="warning"] {{
    background: {WARN_BG}; color: {WARN_TEXT}; border: 1px solid {WARN_BORDER}; border-radius: 6px;
    padding: 6px 8px;
}}
QLabel[role="error"] {{ color: {ERROR}; }}
QLabel[role="banner"][state="ok"] {{
    background: {OK_BG}; color: {OK_TEXT}; border-radius: 6px; padding: 6px 10px;
}}
QLabel[role="banner"][state="bad"] {{
    background: {ERROR_BG}; color: {ERROR}; border-radius: 6px; padding: 6px 10px;
}}
QLabel[role="fieldLabel"][differs="true"] {{ color: {DIFF}; font-weight: 600; }}
QLabel[role="fieldLabel"][invalid="true"] {{ color: {ERROR}; font-weight: 600; }}
QLabel[role="diff"] {{ color: {DIFF}; }}

QPushButton {{
    background: {CARD}; border: 1px solid #c8d0da; border-radius: 6px; padding: 5px 14px;
}}
QPushButton:hover {{ background: #f0f4fa; }}
QPushButton:disabled {{ color: #9aa5b3; background: #f3f5f8; }}
QPushButton[primary="true"] {{ background: {ACCENT}; color: white; border: 1px solid {ACCENT_DARK}; }}
QPushButton[primary="true"]:hover {{ background: {ACCENT_DARK}; }}
QPushButton[primary="true"]:disabled {{ background: #a9c0ea; border-color: #a9c0ea; color: #f4f7fc; }}

QSpinBox, QDoubleSpinBox, QLineEdit, QComboBox {{
    background: {CARD}; border: 1px solid #c8d0da; border-radius: 5px; padding: 3px 6px;
    min-height: 20px;
}}
QSpinBox:focus, QDoubleSpinBox:focus, QLineEdit:focus, QComboBox:focus {{ border-color: {ACCENT}; }}
QSpinBox[differs="true"], QDoubleSpinBox[differs="true"], QLineEdit[differs="true"],
QComboBox[differs="true"] {{ border-color: {WARN_BORDER}; background: {WARN_BG}; }}
QSpinBox[invalid="true"], QDoubleSpinBox[invalid="true"], QLineEdit[invalid="true"],
QComboBox[invalid="true"] {{ border-color: {ERROR}; background: {ERROR_BG}; }}
QSpinBox::up-button, QDoubleSpinBox::up-button {{
    subcontrol-origin: border; subcontrol-position: top right; width: 18px; border: none;
    border-left: 1px solid #e1e6ec; border-top-right-radius: 5px;
}}
QSpinBox::down-button, QDoubleSpinBox::down-button {{
    subcontrol-origin: border; subcontrol-position: bottom right; width: 18px; border: none;
    border-left: 1px solid #e1e6ec; border-bottom-right-radius: 5px;
}}
QSpinBox::up-button:hover, QDoubleSpinBox::up-button:hover,
QSpinBox::down-button:hover, QDoubleSpinBox::down-button:hover {{ background: #eef2f7; }}
QSpinBox::up-arrow, QDoubleSpinBox::up-arrow {{ image: url({_RES}/arrow_up.svg); width: 9px; height: 6px; }}
QSpinBox::down-arrow, QDoubleSpinBox::down-arrow {{ image: url({_RES}/arrow_down.svg); width: 9px; height: 6px; }}
QComboBox::drop-down {{ border: none; width: 22px; }}
QComboBox::down-arrow {{ image: url({_RES}/arrow_down.svg); width: 10px; height: 6px; }}
QComboBox QAbstractItemView {{ background: {CARD}; border: 1px solid {BORDER}; selection-background-color: #e6eefc;
    selection-color: {TEXT}; }}
QToolButton {{ background: {CARD}; border: 1px solid #c8d0da; border-radius: 5px; padding: 3px 9px; }}
QToolButton:hover {{ background: #f0f4fa; }}
QCheckBox::indicator {{ width: 14px; height: 14px; border: 1px solid #aab4c2; border-radius: 3px; background: {CARD}; }}
QCheckBox::indicator:hover {{ border-color: {ACCENT}; }}
QCheckBox::indicator:checked {{ background: {ACCENT}; border-color: {ACCENT_DARK}; image: url({_RES}/check.svg); }}
QCheckBox::indicator:disabled {{ background: #eef1f5; border-color: #cfd6df; }}
QTableWidget#tiers {{ border: none; }}
QTableWidget#tiers::item:selected {{ background: #e6eefc; color: {TEXT}; }}
QTableWidget {{ background: {CARD}; border: 1px solid #c8d0da; border-radius: 5px; gridline-color: #edf0f4; }}
QHeaderView::section {{ background: #f5f7fa; border: none; border-bottom: 1px solid {BORDER}; padding: 4px; }}
QToolButton#advancedToggle {{ border: none; background: transparent; font-weight: 600; padding: 4px 0; }}
QScrollArea {{ background: transparent; border: none; }}
QScrollArea > QWidget > QWidget {{ background: transparent; }}
QStatusBar {{ background: #e9edf2; color: #4a5565; }}
QStatusBar QLabel {{ padding: 0 8px; }}
QMenuBar {{ background: {CARD}; border-bottom: 1px solid {BORDER}; }}
"""


def apply_style(app: QApplication) -> None:
    """Fusion + a light palette + the style sheet; the base font is a touch larger than Qt's 9 pt."""
    app.setStyle("Fusion")
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor(WINDOW))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Base, QColor(CARD))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f6f8fb"))
    palette.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Button, QColor(CARD))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.ToolTipBase, QColor(CARD))
    palette.setColor(QPalette.ColorRole.ToolTipText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor(MUTED))
    app.setPalette(palette)
    font = app.font()
    if font.pointSizeF() > 0 and font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(STYLE_SHEET)


def scaled_font(base: QFont, factor: float, bold: bool = False) -> QFont:
    font = QFont(base)
    if base.pointSizeF() > 0:
        font.setPointSizeF(base.pointSizeF() * factor)
    font.setBold(bold)
    return font


def repolish(widget) -> None:
    """Re-apply the style sheet after a dynamic property changed (Qt does not do it by itself)."""
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()
