"""The cache of trained feature networks (generators/image/evaluation.py save_extractor /
load_extractor): an entry is written atomically, weights first and the JSON that records their
SHA-256 last, so a damaged, half-written or mixed-up entry is refused (the caller trains the
network again) rather than crashing or being trusted."""

import hashlib
import json

import pytest
import torch

import generators.image.evaluation as evaluation
from generators.image.evaluation import Autoencoder, Classifier, load_extractor, save_extractor

CPU = torch.device("cpu")
KEY = "a" * 32


def classifier(seed: int) -> tuple[Classifier, dict]:
    torch.manual_seed(seed)
    net = Classifier(channels=1, resolution=8, n_classes=3).eval()
    return net, {"kind": "classifier", "key": KEY, "channels": 1, "resolution": 8, "n_classes": 3}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_saved_extractor_loads_with_its_weights_and_record(tmp_path):
    net, info = classifier(seed=1)
    save_extractor(tmp_path, KEY, net, info)
    loaded, loaded_info = load_extractor(tmp_path, KEY, CPU)
    assert isinstance(loaded, Classifier) and same_weights(loaded, net) and not loaded.training
    assert {k: loaded_info[k] for k in info} == info
    weights = (tmp_path / f"{KEY}.safetensors").read_bytes()
    assert loaded_info["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEY}.json", f"{KEY}.safetensors"]

    torch.manual_seed(2)
    auto = Autoencoder(channels=3, resolution=8)
    save_extractor(tmp_path, "b" * 32, auto, {"kind": "autoencoder", "channels": 3, "resolution": 8})
    assert same_weights(load_extractor(tmp_path, "b" * 32, CPU)[0], auto)


def test_the_callers_record_is_not_changed(tmp_path):
    net, info = classifier(seed=1)
    before = dict(info)
    save_extractor(tmp_path, KEY, net, info)
    assert info == before


@pytest.mark.parametrize("damage", ["weights cut short", "weights missing", "json missing",
                                    "json cut short", "json names no hash", "weights flipped"])
def test_a_damaged_entry_is_refused_and_a_new_save_repairs_it(tmp_path, damage):
    net, info = classifier(seed=1)
    save_extractor(tmp_path, KEY, net, info)
    weights, record = tmp_path / f"{KEY}.safetensors", tmp_path / f"{KEY}.json"
    if damage == "weights cut short":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "weights missing":
        weights.unlink()
    elif damage == "json missing":
        record.unlink()
    elif damage == "json cut short":
        record.write_text(record.read_text()[:20])
    elif damage == "json names no hash":  # as the cache wrote entries before it recorded one
        record.write_text(json.dumps(info))
    else:  # one byte of a tensor changed: the file still parses, its hash does not match
        raw = bytearray(weights.read_bytes())
        raw[-1] ^= 0xFF
        weights.write_bytes(bytes(raw))
    assert load_extractor(tmp_path, KEY, CPU) is None
    save_extractor(tmp_path, KEY, net, info)  # what the caller does after training it again
    assert same_weights(load_extractor(tmp_path, KEY, CPU)[0], net)


def test_one_writers_json_beside_anothers_weights_is_refused(tmp_path):
    """Two processes trained the same entry and their renames interleaved: A's JSON, B's
    weights (each file whole, and a network of the right shape)."""
    net_a, info = classifier(seed=1)
    net_b, _ = classifier(seed=2)
    save_extractor(tmp_path / "a", KEY, net_a, info)
    save_extractor(tmp_path / "b", KEY, net_b, info)
    (tmp_path / "b" / f"{KEY}.safetensors").replace(tmp_path / "a" / f"{KEY}.safetensors")
    assert load_extractor(tmp_path / "a", KEY, CPU) is None


def test_a_writer_killed_between_the_weights_and_the_json_leaves_no_trusted_entry(tmp_path, monkeypatch):
    """An older entry is there; a new save replaces the weights and dies before its JSON:
    the old JSON no longer matches the weights, so the entry is refused, and no temporary
    file is left behind."""
    old, info = classifier(seed=1)
    save_extractor(tmp_path, KEY, old, info)
    write = evaluation._write_atomic

    def die_at_the_json(path, data):
        if path.suffix == ".json":
            raise OSError("killed")
        write(path, data)

    monkeypatch.setattr(evaluation, "_write_atomic", die_at_the_json)
    new, _ = classifier(seed=2)
    save_extractor(tmp_path, KEY, new, info)  # the error is swallowed: the cache is optional
    assert load_extractor(tmp_path, KEY, CPU) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KEY}.json", f"{KEY}.safetensors"]


def test_a_write_that_fails_midway_keeps_the_old_file_whole_and_leaves_no_temporary(tmp_path, monkeypatch):
    net, info = classifier(seed=1)
    save_extractor(tmp_path, KEY, net, info)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation.os, "replace", disk_full)
    other, _ = classifier(seed=2)
    save_extractor(tmp_path, KEY, other, info)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    assert same_weights(load_extractor(tmp_path, KEY, CPU)[0], net)


def test_an_unwritable_cache_only_means_no_entry(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    net, info = classifier(seed=1)
    save_extractor(blocker / "image-features", KEY, net, info)
    assert load_extractor(blocker / "image-features", KEY, CPU) is None
