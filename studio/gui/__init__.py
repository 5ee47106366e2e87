"""The studio window (PySide6). The only package that imports Qt; it reads runs and sends
commands, and never reaches into a model."""
