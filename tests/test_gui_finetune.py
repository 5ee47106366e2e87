"""Fine-tuning in the window: Train's Start from (a run of yours, an imported model folder) fills
the forms as `studio train --init-from` sets up such a run, and Runs › Fine-tune from this run
chooses it. Driven as a user would (offscreen Qt; one run trains in a real child process)."""

import json
import shutil

import pytest

from studio import api
from studio.gui import runs_panel, train_panel, window as window_module
from studio.gui.data_panel import DataPanel
from studio.gui.messages import for_window
from studio.gui.runs_panel import RunsPanel
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.train_panel import FROM_SCRATCH, IMPORT_FOLDER, TrainPanel
from studio.runstore import RunDir

TINY_RUN = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=32", "batch_size=4", "device=cpu",
            "log_every=5", "eval_every=10", "preview_every=10", "checkpoint_every=10",
            "warmup_steps=0", "preview_tokens=8", "lr=3e-3"]
SHAPE = {"n_layer": "1", "n_head": "2", "n_embd": "16", "block_size": "32", "tokenizer": "char"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny text run pretrained for 20 steps on plain text (checkpoints at 10 and 20), once
    for the module; tests take copies of it."""
    root = tmp_path_factory.mktemp("pretrained")
    corpus = root / "corpus.txt"
    words = "the film was great and the plot was dull but the actors were fine".split()
    corpus.write_text("\n".join(" ".join(words[(i * 5 + j) % len(words)] for j in range(9))
                                for i in range(300)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:  # the per-test cache fixture is not active yet
        mp.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        status, _ = api.train("text", data=str(corpus), run_dir=str(root / "base"), max_steps=20,
                              events="none", settings=TINY_RUN, name="my base")
    assert status == "done"
    return root / "base"


@pytest.fixture(autouse=True)
def no_demo_runs(monkeypatch):
    """The built-in demo runs would be listed too; these tests start from their own runs."""
    monkeypatch.setattr(api, "demo_runs", lambda: [])


@pytest.fixture
def session(tmp_path):
    return Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))


@pytest.fixture
def base(pretrained, session) -> str:
    path = session.runs_folder / "base"
    shutil.copytree(pretrained, path)
    session.runs_changed.emit()  # as a run that finished training here says
    return str(path)


@pytest.fixture
def panels(qtbot, session):
    data = DataPanel(session)
    train = TrainPanel(session, data)
    qtbot.addWidget(data)
    qtbot.addWidget(train)
    train.show()
    yield data, train
    train.trainer.kill()


def choose(train, run: str) -> None:
    """Pick the run in Start from, as a user does (the list's entry, activated)."""
    index = next(i for i in range(train.start_from.count())
                 if (train.start_from.itemData(i) or {}).get("run") == run)
    train.start_from.setCurrentIndex(index)
    train.start_from.activated.emit(index)


def best_checkpoint(run: str) -> str:
    return RunDir(run).resolve_checkpoint("best").name


def test_start_from_lists_runs_with_a_checkpoint_and_starts_from_scratch(qtbot, panels, base):
    _, train = panels
    labels = [train.start_from.itemText(i) for i in range(train.start_from.count())]
    assert labels[0] == FROM_SCRATCH and train.start_from.currentIndex() == 0
    assert train.init_record is None
    entry, = [label for label in labels if label.startswith("my base")]
    assert "step 20" in entry and "best val_bits_per_byte" in entry
    assert labels[-1] == IMPORT_FOLDER  # the text generator imports GPT-2 folders
    assert train.gen_form.widgets["n_layer"].isEnabled()


def test_choosing_a_pretrained_run_takes_its_shape_and_the_fine_tuning_defaults(qtbot, panels, base):
    _, train = panels
    form = train.gen_form
    form.widgets["n_embd"].setText("64")  # by hand: a shape value, which the weights decide
    form.widgets["batch_size"].setText("6")  # by hand: not a shape value, so it stays
    form.widgets["task"].setCurrentText("classify")
    choose(train, base)

    assert train.init_record == {"run": base, "checkpoint": best_checkpoint(base)}
    values = form.raw_values()
    assert {name: values[name] for name in SHAPE} == SHAPE
    for name in SHAPE:
        assert not form.widgets[name].isEnabled()
        assert "weights" in form.widgets[name].toolTip()
    assert values["batch_size"] == "6" and values["task"] == "classify"
    assert values["pooling"] == "mean"  # a classifier on a pretrained body pools by mean
    train_values = train.train_form.raw_values()
    assert float(train_values["lr"]) == pytest.approx(1e-4)
    assert (train_values["warmup_steps"], train_values["max_steps"]) == ("20", "500")
    assert "my base" in train.start_from_note.text()
    assert not train.preset.isEnabled()  # a preset would change the shape

    # A preset file cannot change the shape either; back to scratch frees it again.
    train.gen_form.set_values({"n_layer": 7})
    assert form.raw_values()["n_layer"] == "1"
    train.start_from.setCurrentIndex(0)
    train.start_from.activated.emit(0)
    assert train.init_record is None and form.widgets["n_layer"].isEnabled()
    assert form.raw_values()["pooling"] == "last"
    scratch_lr = api.build_configs(train.session.generator_class())[1].lr
    assert float(train.train_form.raw_values()["lr"]) == pytest.approx(scratch_lr)


def test_a_lora_rank_takes_the_lora_learning_rate_unless_lr_was_typed(qtbot, panels, base):
    _, train = panels
    choose(train, base)
    lr = lambda: float(train.train_form.raw_values()["lr"])  # noqa: E731
    train.train_form.widgets["lora_rank"].setText("8")
    assert lr() == pytest.approx(1e-3)  # 10x the fine-tuning rate
    train.train_form.widgets["lora_rank"].setText("0")
    assert lr() == pytest.approx(1e-4)

    train.train_form.widgets["lr"].setText("2e-4")  # typed by hand: the user's
    train.train_form.widgets["lora_rank"].setText("4")
    assert lr() == pytest.approx(2e-4)


def test_a_lora_rank_chosen_first_gives_the_lora_rate_when_the_run_is_chosen(qtbot, panels, base):
    _, train = panels
    train.train_form.widgets["lora_rank"].setText("8")
    choose(train, base)
    assert float(train.train_form.raw_values()["lr"]) == pytest.approx(1e-3)


def test_start_passes_the_best_checkpoint_of_the_run_chosen(qtbot, panels, base, monkeypatch):
    _, train = panels
    launched = []
    monkeypatch.setattr(train.trainer, "start", lambda args, run_dir: launched.append(args))
    choose(train, base)
    assert train.start_button.isEnabled(), train.problem.text()
    train.start()
    (args,) = launched
    checkpoint = RunDir(base).checkpoint_dir(best_checkpoint(base))
    assert args[args.index("--init-from") + 1] == str(checkpoint)
    assert "--init-from-hf" not in args


def test_a_classifier_fine_tuned_from_the_run_records_its_base_and_trains(qtbot, panels, base):
    data, train = panels
    train.gen_form.widgets["task"].setCurrentText("classify")
    choose(train, base)
    train.train_form.set_values({"max_steps": "4", "log_every": "2"})
    train.device.setCurrentText("cpu")
    data.set_source("builtin:sentiment")
    qtbot.waitUntil(lambda: data.report is not None and "label" in json.dumps(data.report.to_json()),
                    timeout=60_000)  # read as labelled data, for the classify task
    qtbot.waitUntil(train.start_button.isEnabled, timeout=10_000)
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.trainer.running, timeout=120_000)
    run = RunDir(train.run_dir)
    assert run.info()["status"] == "done", train.error_message.text()
    doc = run.config()
    assert doc["init"] == {"run": base, "checkpoint": best_checkpoint(base)}
    assert doc["config"]["task"] == "classify" and doc["config"]["pooling"] == "mean"
    assert doc["config"]["n_embd"] == 16 and doc["train"]["warmup_steps"] == 20


def test_an_imported_folder_that_is_no_model_is_refused_with_why(qtbot, panels, base, tmp_path,
                                                                 monkeypatch):
    _, train = panels
    choose(train, base)
    errors = []
    monkeypatch.setattr(train_panel, "show_error", lambda parent, title, text: errors.append(text))
    monkeypatch.setattr(train_panel, "pick_model_folder", lambda parent: str(tmp_path))
    index = train.start_from.findData(IMPORT_FOLDER)
    train.start_from.setCurrentIndex(index)
    train.start_from.activated.emit(index)
    (message,) = errors
    assert "config.json" in message and "--" not in message
    assert train.init_record == {"run": base, "checkpoint": best_checkpoint(base)}  # as before


def test_an_imported_gpt2_folder_is_started_from_with_its_shape(qtbot, panels, tmp_path, monkeypatch):
    _, train = panels
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64,
         "vocab_size": 300}))
    monkeypatch.setattr(train_panel, "pick_model_folder", lambda parent: str(folder))
    launched = []
    monkeypatch.setattr(train.trainer, "start", lambda args, run_dir: launched.append(args))
    index = train.start_from.findData(IMPORT_FOLDER)
    train.start_from.setCurrentIndex(index)
    train.start_from.activated.emit(index)
    assert train.init_record == {"pretrained": str(folder.resolve())}
    assert "gpt2" in train.start_from.currentText()
    values = train.gen_form.raw_values()
    assert (values["tokenizer"], values["n_layer"], values["block_size"]) == ("bpe", "2", "64")
    assert not train.gen_form.widgets["n_embd"].isEnabled()
    train.start()
    (args,) = launched
    assert args[args.index("--init-from-hf") + 1] == str(folder.resolve())


def test_duplicating_a_fine_tuning_run_starts_from_its_base(qtbot, panels, base):
    _, train = panels
    record = {"run": base, "checkpoint": best_checkpoint(base)}
    doc = {"generator": "text", "name": "tuned (copy)", "init": record,
           "config": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "task": "classify"},
           "train": {"lr": 0.0002, "max_steps": 30}}
    train.duplicate(doc)
    assert train.init_record == record and train.start_from.currentText().startswith("my base")
    assert train.start_from.count() == 3  # no second entry for the same start
    assert not train.gen_form.widgets["n_layer"].isEnabled()
    assert train.train_form.raw_values()["lr"] == "0.0002"  # the copied settings, not defaults


def make_runs_panel(qtbot, session):
    panel = RunsPanel(session)
    qtbot.addWidget(panel)
    return panel


def test_fine_tune_from_this_run_chooses_it_in_train(qtbot, session, base):
    win = window_module.MainWindow(session)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.train_panel is not None, timeout=60_000)
    win.tabs.setCurrentWidget(win.runs_panel)
    win.runs_panel.refresh()
    win.runs_panel.select_runs([base])
    assert win.runs_panel.fine_tune_button.isEnabled(), win.runs_panel.fine_tune_button.toolTip()
    win.runs_panel.fine_tune_button.click()
    assert win.tabs.currentWidget() is win.train_panel
    assert win.train_panel.init_record == {"run": base, "checkpoint": best_checkpoint(base)}
    assert not win.train_panel.gen_form.widgets["n_layer"].isEnabled()
    assert "fine-tunes my base" in win.train_panel.notice.text()


def test_fine_tune_is_refused_with_why(qtbot, session, base, monkeypatch):
    untrained = session.runs_folder / "untrained"
    shutil.copytree(base, untrained)
    shutil.rmtree(untrained / "checkpoints")
    RunDir(untrained).update(name="untrained")
    panel = make_runs_panel(qtbot, session)
    warned = []
    monkeypatch.setattr(runs_panel, "warn", lambda parent, title, text: warned.append(text))
    requested = []
    panel.fine_tune_requested.connect(requested.append)

    def refusal(paths):
        panel.select_runs(paths)
        action, = [a for a in panel.context_menu().actions() if a.text() == "Fine-tune from this run…"]
        assert not action.isEnabled() and not panel.fine_tune_button.isEnabled()
        assert action.toolTip() == panel.fine_tune_button.toolTip()
        return action.toolTip()

    assert refusal([str(untrained)]) == "untrained has no checkpoint to start from"
    assert refusal([base, str(untrained)]) == "Select one run to fine-tune from it"
    panel.fine_tune_selected()
    assert warned == ["Select one run to fine-tune from it"] and requested == []

    running = dict(next(r for r in panel.rows if r["run"] == base), status="running")
    monkeypatch.setattr(panel, "selected_rows", lambda: [running])
    panel.update_buttons()
    assert panel.fine_tune_button.toolTip().endswith("is training now; start from it once it "
                                                     "has finished or stopped")

    monkeypatch.undo()
    panel.select_runs([base])
    panel.fine_tune_selected()
    assert requested == [base]


def test_fine_tuning_advice_in_core_messages_names_the_windows_controls():
    for message in ("to train on, start a new run from them (`studio train --init-from r/checkpoints/step_1`).",
                    "Start a new run (--init-from runs/a) instead.",
                    "Give the base with --init-from RUN (a trained run) or --init-from-hf DIR (an "
                    "imported model), or train all weights with lora_rank=0."):
        shown = for_window(message)
        assert "--" not in shown and "`studio" not in shown
        assert "Fine-tune from this run" in shown or "Start from" in shown
