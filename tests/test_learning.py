"""The text generator learns real text: held-out loss on unseen Shakespeare clearly drops."""

import math

from conftest import SHAKESPEARE_TRAIN, SHAKESPEARE_VAL
from studio import api


def test_tiny_gpt_learns_shakespeare(tmp_path):
    run = tmp_path / "run"
    status, _ = api.train("text", data=str(SHAKESPEARE_TRAIN), val_data=str(SHAKESPEARE_VAL),
                          run_dir=str(run), max_steps=300, events="none",
                          settings=["device=cpu", "eval_every=0", "preview_every=0"])
    assert status == "done"
    held_out = api.evaluate(str(run), data=str(SHAKESPEARE_VAL))
    # The untrained model scores about ln(vocab) ~ 4.2 nats per character. After 300 steps of
    # nanoGPT's CPU shape we measured 2.47 (bench: 1.9 after 2000); 2.75 leaves a margin.
    assert held_out["loss"] < 2.75, held_out
    assert held_out["bits_per_byte"] < 2.75 / math.log(2)
    assert held_out["tokens"] > 200_000  # the whole held-out play, not a sample of it
    samples = api.generate(str(run), prompt="ROMEO:", n=2, seed=7,
                           settings=["max_new_tokens=100"])
    assert all(s.data.startswith("ROMEO:") and len(s.data) == len("ROMEO:") + 100 for s in samples)
    assert samples[0].data != samples[1].data
