"""No Qt subclass in studio/gui sets an attribute that hides a method of its Qt base.

`Charts` (a pyqtgraph GraphicsLayoutWidget) once set `self.metric = "val_loss"`: Qt calls the
C++ virtual QGraphicsView::metric() through Python, found the string instead, and the process
died in libshiboken ("'str' object is not callable") whenever a dialog opened over the charts
in the dark theme. Any `self.size`, `self.update`, `self.show`, ... has the same trap.
"""

import ast
import importlib
import inspect
from pathlib import Path

from PySide6.QtCore import QObject, Signal

GUI = Path(__file__).resolve().parent.parent / "studio" / "gui"
QT_PACKAGES = ("PySide6", "shiboken6", "pyqtgraph")


def assigned_on_self(class_node: ast.ClassDef) -> dict[str, int]:
    """Attribute names assigned as `self.NAME = ...` anywhere in the class's methods (nested
    functions and lambdas included, nested classes not), with the line of the first one."""
    names: dict[str, int] = {}

    def targets(node) -> list[ast.expr]:
        if isinstance(node, ast.Assign):
            return node.targets
        if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            return [node.target]
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            return [node.target]
        if isinstance(node, (ast.With, ast.AsyncWith)):
            return [item.optional_vars for item in node.items if item.optional_vars is not None]
        if isinstance(node, ast.NamedExpr):
            return [node.target]
        return []

    def flatten(target):
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                yield from flatten(element)
        elif isinstance(target, ast.Starred):
            yield from flatten(target.value)
        else:
            yield target

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                continue  # a nested class has its own `self`
            for target in targets(child):
                for leaf in flatten(target):
                    if (isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name)
                            and leaf.value.id == "self"):
                        names.setdefault(leaf.attr, leaf.lineno)
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) \
                    and child.func.id == "setattr" and child.args \
                    and isinstance(child.args[0], ast.Name) and child.args[0].id == "self" \
                    and len(child.args) > 1 and isinstance(child.args[1], ast.Constant):
                names.setdefault(str(child.args[1].value), child.lineno)
            visit(child)

    for item in class_node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit(item)
    return names


def qt_callables(cls: type) -> dict[str, str]:
    """Callables (methods, signals) that `cls` inherits from Qt or pyqtgraph classes, with the
    class that defines each."""
    found: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.split(".")[0] not in QT_PACKAGES:
            continue
        for name, value in vars(base).items():
            if name.startswith("__"):
                continue
            if callable(value) or isinstance(value, (Signal, staticmethod, classmethod)):
                found[name] = f"{base.__module__}.{base.__qualname__}"
    return found


def classes_in(module_name: str, tree: ast.Module):
    """(class node, class object) for every class defined at module level or in a class."""
    module = importlib.import_module(module_name)

    def walk(body, owner):
        for node in body:
            if isinstance(node, ast.ClassDef):
                cls = getattr(owner, node.name, None)
                if inspect.isclass(cls):
                    yield node, cls
                    yield from walk(node.body, cls)
    yield from walk(tree.body, module)


def shadowing_attributes() -> list[str]:
    problems = []
    for path in sorted(GUI.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, cls in classes_in(f"studio.gui.{path.stem}", tree):
            if not issubclass(cls, QObject):
                continue
            inherited = qt_callables(cls)
            for name, line in assigned_on_self(node).items():
                if name in inherited:
                    problems.append(f"{path.name}:{line} {cls.__name__}.{name} hides "
                                    f"{inherited[name]}.{name}()")
    return problems


def test_no_qt_subclass_sets_an_attribute_named_like_a_qt_method():
    problems = shadowing_attributes()
    assert not problems, ("rename these attributes (Qt calls the methods they hide, and the "
                          "process dies in libshiboken):\n  " + "\n  ".join(problems))


def test_the_guard_finds_what_crashed_the_window(tmp_path):
    """The check itself: a class like the old Charts is caught; a harmless name is not."""
    import pyqtgraph as pg
    source = ("class Charts(pg.GraphicsLayoutWidget):\n"
              "    def __init__(self):\n"
              "        super().__init__()\n"
              "        self.metric = 'val_loss'\n"
              "        self.held_out_metric, self.size = 'x', 3\n"
              "        self.series = {}\n")
    namespace = {"pg": pg}
    exec(compile(source, "charts.py", "exec"), namespace)
    node = ast.parse(source).body[0]
    names = assigned_on_self(node)
    assert set(names) == {"metric", "held_out_metric", "size", "series"}
    inherited = qt_callables(namespace["Charts"])
    assert {name for name in names if name in inherited} == {"metric", "size"}
    assert inherited["metric"].startswith("PySide6.")
