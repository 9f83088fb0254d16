"""A form generated from a pydantic plan model (``SweepPlan``, ``StackPlan``).

The form follows the plan's fields, so it stays in step with ``rawsigma.acquire.plans``
without restating them: numbers get spin boxes, booleans check boxes, ``Literal``
and ``Enum`` fields combo boxes, anything else a line edit parsed as JSON (or taken
as a string). Validation is the plan's own (pydantic); its message is shown as-is.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from qtpy import QtWidgets

_BIG = 1e12


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


class PlanForm(QtWidgets.QWidget):
    """Editable form for a pydantic model class.

    Parameters
    ----------
    model_cls : type[pydantic.BaseModel]
        The plan class.
    order : sequence of str, optional
        Field names shown first (the rest follow in definition order).
    """

    def __init__(
        self,
        model_cls: type,
        order: tuple[str, ...] = (),
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model_cls = model_cls
        self.widgets: dict[str, tuple[QtWidgets.QWidget, str, bool]] = {}
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        fields = dict(model_cls.model_fields)
        names = [n for n in order if n in fields] + [n for n in fields if n not in order]
        defaults = self._defaults()
        for name in names:
            info = fields[name]
            w, kind, optional = self._make_widget(info.annotation)
            w.setToolTip(info.description or name)
            self.widgets[name] = (w, kind, optional)
            label = name.replace("_", " ")
            form.addRow(label, w)
            self._set_value(name, defaults.get(name))

    def _defaults(self) -> dict[str, Any]:
        try:
            return self.model_cls().model_dump(mode="json")
        except Exception:  # a plan without defaults for every field
            out = {}
            for name, info in self.model_cls.model_fields.items():
                if not info.is_required():
                    d = info.get_default(call_default_factory=True)
                    out[name] = json.loads(json.dumps(d, default=str))
            return out

    @staticmethod
    def _make_widget(annotation: Any) -> tuple[QtWidgets.QWidget, str, bool]:
        tp, optional = _strip_optional(annotation)
        origin = typing.get_origin(tp)
        if tp is bool:
            return QtWidgets.QCheckBox(), "bool", optional
        if tp is int and not optional:
            w = QtWidgets.QSpinBox()
            w.setRange(-(2**31) + 1, 2**31 - 1)
            return w, "int", optional
        if tp is float and not optional:
            w = QtWidgets.QDoubleSpinBox()
            w.setRange(-_BIG, _BIG)
            w.setDecimals(6)
            return w, "float", optional
        choices: list[Any] | None = None
        if origin is typing.Literal:
            choices = list(typing.get_args(tp))
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            choices = [m.value for m in tp]
        if choices is not None:
            w = QtWidgets.QComboBox()
            if optional:
                w.addItem("(none)", None)
            for c in choices:
                w.addItem(str(c), c)
            return w, "choice", optional
        return QtWidgets.QLineEdit(), "json", optional

    def _set_value(self, name: str, value: Any) -> None:
        w, kind, _ = self.widgets[name]
        if kind == "bool":
            w.setChecked(bool(value))
        elif kind == "int":
            w.setValue(int(value or 0))
        elif kind == "float":
            w.setValue(float(value or 0.0))
        elif kind == "choice":
            i = next((k for k in range(w.count()) if w.itemData(k) == value), -1)
            if i < 0 and isinstance(value, str):
                i = w.findText(value)
            w.setCurrentIndex(max(i, 0))
        else:
            if value is None:
                w.setText("")
            elif isinstance(value, str):
                w.setText(value)
            else:
                w.setText(json.dumps(value))

    def values(self) -> dict[str, Any]:
        """The form content as a dict of field values (not yet validated)."""
        out: dict[str, Any] = {}
        for name, (w, kind, optional) in self.widgets.items():
            if kind == "bool":
                out[name] = w.isChecked()
            elif kind in ("int", "float"):
                out[name] = w.value()
            elif kind == "choice":
                out[name] = w.currentData()
            else:
                text = w.text().strip()
                if text == "":
                    if optional:
                        out[name] = None
                    continue
                try:
                    out[name] = json.loads(text)
                except json.JSONDecodeError:
                    out[name] = text
        return out

    def set_values(self, **values: Any) -> None:
        """Set some fields (by name) in the form."""
        for name, v in values.items():
            if name not in self.widgets:
                raise KeyError(f"{self.model_cls.__name__} has no field {name!r}")
            self._set_value(name, v)

    def plan(self) -> Any:
        """Validate the form into a plan instance (raises pydantic ``ValidationError``)."""
        return self.model_cls(**self.values())

    def set_plan(self, plan: Any) -> None:
        """Fill the form from a plan instance."""
        self.set_values(**plan.model_dump(mode="json"))
