"""A form built from a config dataclass: plugin authors write no UI.

Each field becomes a widget by its type and metadata (choices: a combo box; bool: a check box;
numbers, text, lists: a line edit), with the field's help as its tooltip. Values are checked by
the same validator the CLI and the JSON loader use (studio.config.from_dict); invalid fields
are marked red with the reason, and `validate()` says whether the whole config is usable.
The form remembers which fields the user changed by hand (`edited`), so that values filled in
for them later (a fine-tuning run's defaults) leave those alone, and can hold fields fixed
(`fix_values`: a model's shape when the run starts from its weights).
"""

from __future__ import annotations

import json

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QWidget

from studio.config import check_field, describe, from_dict, to_dict
from studio.errors import StudioError
from studio.gui import theme

# An invalid field: a red border on a background tinted red, dark on the dark theme (a light
# pink one left the dark theme's light text unreadable).
INVALID_STYLES = {"light": "border: 1px solid #d9534f; background: #fdecea;",
                  "dark": "border: 1px solid #e06c6c; background: #4a2222;"}


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class ConfigForm(QWidget):
    changed = Signal()

    def __init__(self, config_cls, defaults: dict | None = None, parent=None):
        super().__init__(parent)
        self.config_cls = config_cls
        self.schema = {f["name"]: f for f in describe(config_cls)}
        self.widgets: dict[str, QWidget] = {}
        self.errors: dict[str, str] = {}
        self.edited: set[str] = set()  # fields the user changed by hand (not set_values)
        self.fixed: dict[str, object] = {}  # fields shown with a value that cannot change
        self.tips: dict[str, str] = {}  # each field's own tooltip, given back when it is freed
        layout = QFormLayout(self)
        for name, field in self.schema.items():
            widget = self._make_widget(field)
            help_text = field.get("help", "")
            bounds = [f"min {field['min']}" if "min" in field else "",
                      f"max {field['max']}" if "max" in field else ""]
            tip = help_text + (f" ({', '.join(b for b in bounds if b)})" if any(bounds) else "")
            widget.setToolTip(tip)
            widget.setObjectName(f"field_{name}")
            self.tips[name] = tip
            label = QLabel(name.replace("_", " "))
            label.setToolTip(tip)
            layout.addRow(label, widget)
            self.widgets[name] = widget
        self.set_values({**{n: f["default"] for n, f in self.schema.items()}, **(defaults or {})})

    def _make_widget(self, field: dict) -> QWidget:
        # set_values blocks these signals: they fire only for what the user does.
        by_hand = lambda *_, name=field["name"]: self._edited_by_hand(name)  # noqa: E731
        if field.get("choices"):
            widget = QComboBox()
            widget.addItems([str(c) for c in field["choices"]])
            widget.currentIndexChanged.connect(by_hand)
        elif field["type"] == "bool":
            widget = QCheckBox()
            widget.toggled.connect(by_hand)
        else:
            widget = QLineEdit()
            if field.get("optional"):  # what leaving it empty means, e.g. "scaled to max_steps"
                widget.setPlaceholderText(f"empty = {field.get('empty', 'none')}")
            widget.textChanged.connect(by_hand)
        return widget

    def _edited_by_hand(self, name: str) -> None:
        self.edited.add(name)
        self._changed()

    def _changed(self, *_):
        self.validate()
        self.changed.emit()

    def fix_values(self, values: dict, reason: str) -> None:
        """Show these fields with these values, disabled, with `reason` as their tooltip; no
        later set_values (a preset, a loaded file) changes them. The fields fixed before are
        freed first; `fix_values({}, "")` frees them all."""
        for name in self.fixed:
            self.widgets[name].setEnabled(True)
            self.widgets[name].setToolTip(self.tips[name])
        self.fixed = {}
        self.set_values(values)
        self.fixed = {name: value for name, value in values.items() if name in self.widgets}
        for name in self.fixed:
            self.widgets[name].setEnabled(False)
            self.widgets[name].setToolTip(reason)

    def set_values(self, values: dict) -> None:
        for name, value in values.items():
            widget = self.widgets.get(name)
            if widget is None or name in self.fixed:
                continue
            widget.blockSignals(True)
            if isinstance(widget, QComboBox):
                widget.setCurrentText(str(value))
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            else:
                widget.setText(_as_text(value))
            widget.blockSignals(False)
        self._changed()

    def raw_values(self) -> dict:
        """What the user entered, before validation (empty optional fields are None)."""
        out = {}
        for name, widget in self.widgets.items():
            if isinstance(widget, QComboBox):
                out[name] = widget.currentText()
            elif isinstance(widget, QCheckBox):
                out[name] = widget.isChecked()
            else:
                text = widget.text().strip()
                out[name] = None if (text == "" and self.schema[name].get("optional")) else text
        return out

    def validate(self):
        """(config or None, problem or None). Marks each invalid field with its reason."""
        raw = self.raw_values()
        self.errors = {}
        for name, value in raw.items():
            try:
                check_field(self.config_cls, name, value, "setting")
            except StudioError as exc:
                self.errors[name] = str(exc).removeprefix("setting: ")
        invalid_style = INVALID_STYLES[theme.current()]
        for name, widget in self.widgets.items():
            widget.setStyleSheet(invalid_style if name in self.errors else "")
            if name in self.errors:
                widget.setToolTip(self.errors[name])
        if self.errors:
            return None, next(iter(self.errors.values()))  # the message names the setting
        try:
            return from_dict(self.config_cls, raw, "settings"), None
        except StudioError as exc:
            return None, str(exc).removeprefix("settings: ")

    def config_values(self) -> dict:
        """The validated values as plain JSON types (call when validate() succeeded)."""
        config, problem = self.validate()
        if config is None:
            raise StudioError(problem)
        return to_dict(config)
