"""A character-level LSTM text generator: a plugin for AIGC Studio (entry point `charlstm`)."""

from studio_charlstm.generator import CharlstmGenerator

__all__ = ["CharlstmGenerator"]
