"""Light and dark themes for the whole window, charts included.

A theme is a QPalette on Qt's Fusion style (a style sheet only recoloured backgrounds: disabled
buttons looked enabled and radio buttons vanished on dark). Charts are pyqtgraph widgets that do
not follow the palette, so they ask `chart_style()` for their colours when built and again when
the session's `theme_changed` signal fires.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleOption

THEMES = ("system", "light", "dark")

_DARK = {
    QPalette.ColorRole.Window: "#2b2b2b", QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1e1e1e", QPalette.ColorRole.AlternateBase: "#262626",
    QPalette.ColorRole.ToolTipBase: "#3a3a3a", QPalette.ColorRole.ToolTipText: "#f0f0f0",
    QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#3a3a3a",
    QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Highlight: "#3d7bd9", QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#7fb2ff", QPalette.ColorRole.PlaceholderText: "#8a8a8a",
    QPalette.ColorRole.Mid: "#505050", QPalette.ColorRole.Dark: "#1a1a1a",
    QPalette.ColorRole.Light: "#4a4a4a", QPalette.ColorRole.Midlight: "#424242",
    QPalette.ColorRole.Shadow: "#101010",
}
# What disabled widgets show on dark: clearly dimmer than the enabled text.
_DARK_DISABLED = {
    QPalette.ColorRole.WindowText: "#7a7a7a", QPalette.ColorRole.Text: "#7a7a7a",
    QPalette.ColorRole.ButtonText: "#7a7a7a", QPalette.ColorRole.Button: "#303030",
    QPalette.ColorRole.Base: "#252525", QPalette.ColorRole.HighlightedText: "#9a9a9a",
}

_current = "light"
_style: QProxyStyle | None = None  # the application takes it, but Python must keep it alive too

# Fusion outlines check boxes and radio buttons in the window colour made 40% darker, which on
# a dark window is next to invisible: these draw them as if on a light grey window instead.
_OUTLINED = (QStyle.PrimitiveElement.PE_IndicatorRadioButton,
             QStyle.PrimitiveElement.PE_IndicatorCheckBox)
_OUTLINE_BASE = QColor("#b4b4b4")


class DarkFusionStyle(QProxyStyle):
    """Fusion, with check box and radio button outlines that show on a dark window."""

    def drawPrimitive(self, element, option: QStyleOption, painter, widget=None) -> None:
        if element in _OUTLINED:
            option = type(option)(option)  # a copy: the caller's option stays as it was
            option.palette.setColor(QPalette.ColorRole.Window, _OUTLINE_BASE)
        super().drawPrimitive(element, option, painter, widget)


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in _DARK.items():
        palette.setColor(role, QColor(color))
    for role, color in _DARK_DISABLED.items():
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(color))
    return palette


def apply_theme(name: str) -> str:
    """Apply "light", "dark" or "system" (the platform's palette); returns the one in effect
    ("light" or "dark")."""
    global _current
    app = QApplication.instance()
    if app is None:
        return _current
    global _style
    app.setStyleSheet("")
    # Fusion: the same look everywhere, and one that honours the palette.
    if name == "dark":
        _style = DarkFusionStyle("Fusion")
        app.setStyle(_style)
        app.setPalette(dark_palette())
    else:
        app.setStyle("Fusion")
        _style = None
        app.setPalette(app.style().standardPalette())
    _current = "dark" if name == "dark" else "light"
    return _current


def current() -> str:
    """"light" or "dark": what the window looks like now."""
    return _current


def chart_style() -> dict:
    """Colours for pyqtgraph charts in the current theme: background, foreground (axes, titles,
    legend text) and a muted colour for secondary lines."""
    if _current == "dark":
        return {"background": "#1e1e1e", "foreground": "#d8d8d8", "muted": "#6a7a8a"}
    return {"background": "#ffffff", "foreground": "#333333", "muted": "#96b4dc"}
