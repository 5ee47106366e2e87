"""The declarations of the `charlstm` generator: its settings, name, version, presets and
training defaults. This module imports no torch: the studio reads it (through DECLARATIONS) to
list the generator and show its settings without loading the model's code."""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import setting
from studio.contract import Generator


@dataclass
class CharlstmConfig:
    block: int = setting(64, "characters per training sequence (how far back the gradient "
                         "reaches)", min=2, max=4096)
    embed: int = setting(32, "width of each character's embedding", min=1, max=1024)
    hidden: int = setting(256, "LSTM hidden units per layer", min=1, max=8192)
    layers: int = setting(2, "stacked LSTM layers", min=1, max=16)
    dropout: float = setting(0.0, "dropout between LSTM layers (layers > 1 only)", min=0,
                             max=0.9)
    batch_size: int = setting(32, "sequences per step", min=1, max=65536)
    val_fraction: float = setting(0.1, "share of the text held out for evaluation when no "
                                  "--val-data is given", min=0.01, max=0.5)


@dataclass
class CharlstmSampleConfig:
    length: int = setting(200, "characters to generate", min=1, max=100000)
    temperature: float = setting(0.8, "randomness: lower picks likelier characters", min=0,
                                 max=5, min_exclusive=True)


class CharlstmDeclarations(Generator):
    """A character-level LSTM; CharlstmGenerator (generator.py) adds what it does."""

    name = "charlstm"
    modality = "text"
    version = "0.1.0"
    api = ">=1.0,<2"  # the studio contract versions this was written for
    Config = CharlstmConfig
    SampleConfig = CharlstmSampleConfig
    throughput_unit = "characters"
    presets = {"tiny": {"block": 16, "embed": 8, "hidden": 32, "layers": 1, "batch_size": 8},
               "small": {"block": 128, "embed": 64, "hidden": 512, "layers": 2}}
    train_defaults = {"lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.0}


DECLARATIONS = {"CharlstmGenerator": CharlstmDeclarations}
