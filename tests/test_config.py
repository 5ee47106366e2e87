"""The one validator behind JSON configs, `--set key=value` and the window's form."""

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, strategies as st

from studio.config import (describe, from_dict, parse_assignments, replace, setting,
                           split_settings, to_dict)
from studio.config import TrainConfig
from studio.errors import StudioError


@dataclass
class Demo:
    width: int = setting(64, "hidden units", min=1, max=4096)
    rate: float = setting(0.5, "a rate", min=0, max=1)
    mode: str = setting("fast", "how", choices=("fast", "slow"))
    flag: bool = setting(False, "a switch")
    limit: float | None = setting(None, "optional limit", min=0, min_exclusive=True)

    def check(self):
        return "width must be even" if self.width % 2 else None


def test_strings_from_the_cli_are_coerced_to_field_types():
    config = from_dict(Demo, {"width": "128", "rate": "2.5e-1", "mode": "slow", "flag": "true",
                              "limit": "3"})
    assert config == Demo(width=128, rate=0.25, mode="slow", flag=True, limit=3.0)


@pytest.mark.parametrize("values, message", [
    ({"widht": 3}, "unknown setting 'widht'"),
    ({"width": "wide"}, "'width' must be int"),
    ({"width": 2.5}, "'width' must be int"),
    ({"width": True}, "'width' must be int"),
    ({"width": 0}, "'width' must be >= 1"),
    ({"width": 8192}, "'width' must be <= 4096"),
    ({"rate": "nan"}, "finite"),
    ({"mode": "medium"}, "must be one of fast, slow"),
    ({"flag": "maybe"}, "'flag' must be bool"),
    ({"limit": 0}, "'limit' must be > 0"),
    ({"width": None}, "cannot be empty"),
    ({"width": 7}, "width must be even"),
])
def test_bad_values_are_refused_with_the_setting_named(values, message):
    with pytest.raises(StudioError, match=message):
        from_dict(Demo, values)


def test_optional_field_accepts_none_and_describe_lists_metadata():
    assert from_dict(Demo, {"limit": None}).limit is None
    fields = {f["name"]: f for f in describe(Demo)}
    assert fields["width"]["min"] == 1 and fields["width"]["help"] == "hidden units"
    assert fields["mode"]["choices"] == ("fast", "slow")
    assert fields["limit"]["optional"] is True


def test_assignments_and_routing_between_configs():
    assert parse_assignments(["lr=3e-4", "name=a=b"]) == {"lr": "3e-4", "name": "a=b"}
    with pytest.raises(StudioError, match="key=value"):
        parse_assignments(["lr"])
    demo, train = split_settings({"width": "8", "lr": "0.1"}, Demo, TrainConfig)
    assert demo == {"width": "8"} and train == {"lr": "0.1"}
    with pytest.raises(StudioError, match="unknown setting 'nope'"):
        split_settings({"nope": 1}, Demo, TrainConfig)


def test_replace_validates():
    config = Demo()
    assert replace(config, {"width": "32"}).width == 32
    with pytest.raises(StudioError):
        replace(config, {"rate": 5})


@given(width=st.integers(1, 2048).map(lambda w: w * 2), rate=st.floats(0, 1),
       mode=st.sampled_from(["fast", "slow"]), flag=st.booleans(),
       limit=st.one_of(st.none(), st.floats(1e-6, 1e6)))
def test_json_round_trip(width, rate, mode, flag, limit):
    config = Demo(width=width, rate=rate, mode=mode, flag=flag, limit=limit)
    assert from_dict(Demo, json.loads(json.dumps(to_dict(config)))) == config


def test_intervals_left_empty_are_scaled_to_the_length_of_the_run():
    from studio.config import resolve_intervals

    def intervals(**values):
        train = resolve_intervals(TrainConfig(**values))
        return train.eval_every, train.preview_every, train.checkpoint_every

    assert TrainConfig().eval_every is None  # empty = auto
    assert intervals(max_steps=200) == (20, 20, 50)  # a short run shows progress from the start
    assert intervals(max_steps=30) == (5, 5, 10)
    assert intervals(max_steps=1) == (1, 1, 1)
    assert intervals(max_steps=2000) == (200, 200, 500)
    # long runs: the fixed intervals whose cost was measured, never more often
    assert intervals(max_steps=20000) == (2000, 500, 1000)
    assert intervals(max_steps=10**9) == (2000, 500, 1000)
    # what the user sets is kept, 0 included
    assert intervals(max_steps=200, eval_every=7, preview_every=0) == (7, 0, 50)


def test_a_form_can_say_what_an_empty_interval_means():
    fields = {f["name"]: f for f in describe(TrainConfig)}
    for name in ("eval_every", "preview_every", "checkpoint_every"):
        assert fields[name]["optional"] is True and fields[name]["default"] is None
        assert fields[name]["empty"] == "scaled to max_steps"
        assert "empty = scaled to max_steps" in fields[name]["help"]
    assert fields["max_minutes"]["empty"] == "no limit"
    assert from_dict(TrainConfig, {"eval_every": None}).eval_every is None
