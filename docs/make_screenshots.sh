#!/usr/bin/env bash
# Screenshots of every panel of the real app on a virtual screen (Xvfb), saved as docs/*.png.
# Installs what it needs (Debian packages for Xvfb and Qt's X11 plugin; the project's venv).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v xvfb-run >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 \
        libgl1 libegl1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 >/dev/null
fi
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install -q -e .; }
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots.py docs
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/serve_screenshot.py docs
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/compose_screenshot.py docs
