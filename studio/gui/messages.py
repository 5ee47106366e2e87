"""Core error messages in the window's words.

The core writes its messages for the command line ("lower block_size (--set block_size=...)",
"see `studio runs`", "pick a new --run-dir"): in the window that advice names flags a person
never typed. `for_window` rewrites it into the controls the window has. A pure function on
strings (no Qt), so every panel and every test can use it; a message with no CLI advice comes
back unchanged.
"""

from __future__ import annotations

import re


def _setting(match: re.Match) -> str:
    return f"set {match.group('key').replace('_', ' ')} in the Train form"


# (pattern, replacement), most specific first: a general rule must not eat the words a more
# specific one needs. `X` below stands for any run folder path (no spaces in it, up to the
# closing backtick).
_REWRITES: list[tuple[re.Pattern, object]] = [(re.compile(p, re.IGNORECASE), r) for p, r in [
    # A run another process trains, and starting over from a checkpoint's weights: things the
    # window does not do for a process it did not start.
    (r"\(`studio control [^`]* stop`\)", "(with Stop where it was started)"),
    # Starting a new run from weights: Train's Start from, or Runs › Fine-tune from this run.
    (r"\(`studio train --init-from [^`]*`\)", "(Fine-tune from this run in the Runs tab)"),
    (r"\(--init-from [^)\s]*\)", "(Fine-tune from this run in the Runs tab)"),
    (r"Give the base with --init-from RUN \(a trained run\) or --init-from-hf DIR \(an imported "
     r"model\)", "Choose the base in Start from in the Train tab (a trained run or an imported "
                 "model folder)"),
    # Resuming a run: the Runs tab's Resume button.
    (r"\(`studio train --resume [^`]*`\)", "(Resume in the Runs tab)"),
    (r"`studio train --resume [^`]*`", "Resume in the Runs tab"),
    (r"--resume a run", "resume a run in the Runs tab"),
    # Run folders: the window makes them itself, in the runs folder of File › Settings.
    (r"pick a new --run-dir", "start a new run"),
    (r"pick a writable --run-dir", "pick a writable runs folder in File › Settings"),
    (r"the folder that `studio train --run-dir` created", "a run folder (see the Runs tab)"),
    (r"--run-dir", "a new run"),
    # Checking a plugin is a terminal command; the window names it as one.
    (r"\(`studio plugin validate (?P<name>[^`]*)` runs it on a tiny config\)",
     r"(from a terminal, the plugin validate command of studio runs \g<name> on a tiny config)"),
    # Where lists live in the window.
    (r"`studio runs`", "the Runs tab"),
    (r"`studio generators`", "Help › Plugins…"),
    (r"`studio config[^`]*`", "the Train form's tooltips"),
    (r"`studio train(?: \w+)?`", "the Train tab"),
    (r"`studio generate[^`]*`", "the Generate tab"),
    # Settings: the Train form.
    # The value ends before a sentence's full stop ("e.g. --set lr=3e-4.").
    (r"--set (?P<key>\w+)=(?:\.\.\.|…|[^\s,;)]*[^\s,;).])", _setting),
    (r"use --set for training settings", "change training settings in the Train form"),
    # A setting named without a value ("lower --set threads").
    (r"--set (?P<key>\w+)\b(?!=)",
     lambda m: f"the {m.group('key').replace('_', ' ')} setting in the Train form"),
    (r"--device (?P<device>[\w:]+)", r"device \g<device> in the Train form"),
    # Data: the Data tab.
    (r"leave --data out for the built-in (?P<what>\w+)",
     r"choose the built-in \g<what> in the Data tab"),
    (r"leave --data out", "choose the built-in demo data in the Data tab"),
    (r"(?:give|with) --val-data", "give held-out data"),
    (r"give --data", "choose data in the Data tab"),
    (r"with --data", "in the Data tab"),
    (r"--val-data", "held-out data"),
    (r"--data", "the data in the Data tab"),
    # Starting points of a run.
    (r"--preset and --config", "a preset"),
    (r"--preset", "a preset"),
    (r"--config", "a preset file"),
    (r"--init-from-hf", "a pretrained model"),
    (r"--init-from", "a run to start from"),
    # Which checkpoint to use: the Generate tab's checkpoint box.
    (r"give --checkpoint (?P<name>[\w-]+(?:\.[\w-]+)*)", r"pick \g<name> in the Generate tab's checkpoint box"),
    (r"with --checkpoint (?P<name>[\w-]+(?:\.[\w-]+)*)", r"(pick \g<name> in the Generate tab's checkpoint box)"),
    (r"--checkpoint", "the Generate tab's checkpoint box"),
]]


def for_window(message: str) -> str:
    """`message` with its command-line advice turned into what to do in the window."""
    for pattern, replacement in _REWRITES:
        message = pattern.sub(lambda match: _keep_case(match, replacement), message)
    return message


def _keep_case(match: re.Match, replacement) -> str:
    """The replacement for one match, capitalised when the advice began a sentence."""
    text = replacement(match) if callable(replacement) else match.expand(replacement)
    return text[:1].upper() + text[1:] if match.group(0)[:1].isupper() else text


def duration_text(seconds: float) -> str:
    """A duration as the window shows it: "45s", "3m 05s", "2h 07m"."""
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
