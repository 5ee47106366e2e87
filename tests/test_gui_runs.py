"""The runs browser, driven as a user would: list, open, resume, duplicate, delete, compare.

Three tiny text runs are trained once for the module (a few seconds) and copied into each
test's own runs folder, so tests that delete or add runs cannot disturb one another.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from conftest import ROOT
from studio import api
from studio.gui import runs_panel, theme
from studio.gui.runs_panel import EMPTY_TEXT, RunsPanel
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.runstore import RunDir, list_previews, load_samples

TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "device=cpu", "eval_every=5",
        "preview_every=5", "checkpoint_every=1000", "log_every=2", "warmup_steps=2",
        "preview_tokens=20"]
# name: (learning rate, steps). "short" stops at 5 so that sorting by step is numeric, not by text
# ("5 / 5" sorts after "10 / 10" as text), and so that it lacks the step-10 preview.
RUNS = {"alpha": ("1e-2", 10), "beta": ("3e-3", 10), "short": ("1e-3", 5)}
COLUMN = {name: i for i, name in enumerate(runs_panel.COLUMNS)}
SHIPPED_DEMO_RUNS = api.demo_runs  # before the fixture below hides them


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    corpus.write_text("\n".join(f"ANNA:\n{' '.join(words[(i * 7 + j) % len(words)] for j in range(8))}."
                                for i in range(300)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        for name, (lr, steps) in RUNS.items():
            status, _ = api.train("text", data=str(corpus), run_dir=str(root / "runs" / name),
                                  settings=[*TINY, f"lr={lr}"], max_steps=steps, events="none")
            assert status == "done"
    return root / "runs"


@pytest.fixture(autouse=True)
def no_demo_runs(monkeypatch):
    """Built-in demo runs (assets/demo) would add rows; tests that want one add their own."""
    monkeypatch.setattr(api, "demo_runs", lambda: [])


@pytest.fixture
def runs_folder(trained_runs, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(trained_runs, folder)
    return folder


def make_panel(qtbot, folder):
    session = Session(Settings(runs_folder=str(folder)))
    panel = RunsPanel(session)
    qtbot.addWidget(panel)
    return session, panel


def table_rows(panel) -> dict[str, dict[str, str]]:
    """The table as the user sees it: run name -> {column: text}."""
    out = {}
    for r in range(panel.table.rowCount()):
        cells = {column: panel.table.item(r, c).text() for column, c in COLUMN.items()}
        out[cells["Run"]] = cells
    return out


def names_in_order(panel) -> list[str]:
    return [panel.table.item(r, COLUMN["Run"]).text() for r in range(panel.table.rowCount())]


def select(panel, folder, *names):
    panel.select_runs([str(folder / name) for name in names])
    assert sorted(row["run"] for row in panel.selected_rows()) == sorted(str(folder / n) for n in names)


# --- the table -------------------------------------------------------------------------------------

def test_table_lists_every_run_with_its_step_best_value_and_checkpoints(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    rows = table_rows(panel)
    assert set(rows) == set(RUNS)
    assert panel.stack.currentWidget() is panel.table
    for name, (_, steps) in RUNS.items():
        run = RunDir(runs_folder / name)
        best = run.info()["best"]
        assert rows[name]["Generator"] == "text"
        assert rows[name]["Status"] == "done"
        assert rows[name]["Step"] == f"{steps} / {steps}"
        assert rows[name]["Held-out metric"] == best["metric"] == "val_bits_per_byte"
        assert float(rows[name]["Best"]) == pytest.approx(best["value"], abs=1e-4)
        assert rows[name]["Checkpoints"] == str(len(run.checkpoints()))
    assert rows["alpha"]["Checkpoints"] == "2" and rows["short"]["Checkpoints"] == "1"


def test_sorting_by_step_and_best_is_numeric(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    panel.table.sortItems(COLUMN["Step"], Qt.SortOrder.AscendingOrder)
    assert names_in_order(panel)[0] == "short"
    panel.table.sortItems(COLUMN["Best"], Qt.SortOrder.AscendingOrder)
    bests = [float(panel.table.item(r, COLUMN["Best"]).text()) for r in range(3)]
    assert bests == sorted(bests)
    # Each row's cells stay together when sorted: the name still matches its own best value.
    for r in range(3):
        name = panel.table.item(r, COLUMN["Run"]).text()
        assert bests[r] == pytest.approx(RunDir(runs_folder / name).info()["best"]["value"], abs=1e-4)


def test_empty_state_when_there_are_no_runs(qtbot, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "not-created-yet"):
        _, panel = make_panel(qtbot, folder)
        assert panel.stack.currentWidget() is panel.empty_label
        assert panel.empty_label.text() == EMPTY_TEXT
        buttons = [panel.open_button, panel.resume_button, panel.duplicate_button,
                   panel.delete_button, panel.compare_button]
        assert not any(b.isEnabled() for b in buttons)
        assert all(b.toolTip() for b in buttons + [panel.refresh_button])


def test_new_runs_appear_on_runs_changed_and_the_table_polls_only_while_shown(qtbot, tmp_path,
                                                                              trained_runs):
    folder = tmp_path / "runs"
    folder.mkdir()
    session, panel = make_panel(qtbot, folder)
    assert panel.table.rowCount() == 0
    shutil.copytree(trained_runs / "alpha", folder / "alpha")
    session.runs_changed.emit()
    assert list(table_rows(panel)) == ["alpha"]
    assert panel.stack.currentWidget() is panel.table

    assert not panel.refresh_timer.isActive()
    panel.show()
    assert panel.refresh_timer.isActive()
    shutil.copytree(trained_runs / "beta", folder / "beta")
    panel.refresh_timer.timeout.emit()  # what the timer does every few seconds
    assert set(table_rows(panel)) == {"alpha", "beta"}
    panel.hide()
    assert not panel.refresh_timer.isActive()


def test_a_refresh_keeps_the_selection(qtbot, runs_folder):
    session, panel = make_panel(qtbot, runs_folder)
    select(panel, runs_folder, "beta")
    RunDir(runs_folder / "alpha").update(step=11)  # something changed on disk
    session.runs_changed.emit()
    assert table_rows(panel)["alpha"]["Step"] == "11 / 10"
    assert [row["run"] for row in panel.selected_rows()] == [str(runs_folder / "beta")]


# --- open, resume ------------------------------------------------------------------------------------

def test_open_sets_the_sessions_run(qtbot, runs_folder):
    session, panel = make_panel(qtbot, runs_folder)
    assert not panel.open_button.isEnabled()
    select(panel, runs_folder, "beta")
    assert panel.open_button.isEnabled()
    with qtbot.waitSignal(session.run_changed, timeout=1000) as opened:
        panel.open_button.click()
    assert opened.args == [str(runs_folder / "beta")]
    assert session.current_run == str(runs_folder / "beta")


def test_resume_asks_for_the_run(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    select(panel, runs_folder, "short")
    assert panel.resume_button.isEnabled()
    with qtbot.waitSignal(panel.resume_requested, timeout=1000) as resumed:
        panel.resume_button.click()
    assert resumed.args == [str(runs_folder / "short")]


def test_a_running_run_cannot_be_resumed_or_deleted(qtbot, runs_folder, monkeypatch):
    # This test process stands in for the run's live training process: it holds the lock.
    alpha = RunDir(runs_folder / "alpha")
    alpha.update(status="running", pid=os.getpid())
    alpha.lock()
    try:
        _, panel = make_panel(qtbot, runs_folder)
        assert table_rows(panel)["alpha"]["Status"] == "running"
        select(panel, runs_folder, "alpha")
        assert panel.open_button.isEnabled() and panel.duplicate_button.isEnabled()
        assert not panel.resume_button.isEnabled() and "training now" in panel.resume_button.toolTip()
        assert not panel.delete_button.isEnabled() and "training now" in panel.delete_button.toolTip()
        asked = []
        monkeypatch.setattr(runs_panel, "confirm", lambda *a: asked.append(a) or True)
        monkeypatch.setattr(runs_panel, "warn", lambda *a: None)
        with qtbot.assertNotEmitted(panel.resume_requested):
            panel.resume_selected()  # e.g. from a shortcut: still refused
        panel.delete_selected()
        assert asked == [] and (runs_folder / "alpha" / "config.json").exists()
    finally:
        alpha.unlock()
    panel.refresh()
    assert table_rows(panel)["alpha"]["Status"] == "interrupted"  # its process is gone


def test_demo_runs_are_listed_but_read_only(qtbot, runs_folder, tmp_path, monkeypatch):
    demo = tmp_path / "demo" / "text-demo"
    shutil.copytree(runs_folder / "short", demo)
    monkeypatch.setattr(api, "demo_runs", lambda: [demo])
    _, panel = make_panel(qtbot, runs_folder)
    assert table_rows(panel)["text-demo demo"]["Status"] == "demo"
    panel.select_runs([str(demo)])
    assert panel.open_button.isEnabled() and panel.duplicate_button.isEnabled()
    assert not panel.resume_button.isEnabled()
    assert not panel.delete_button.isEnabled() and "demo" in panel.delete_button.toolTip()


# --- delete --------------------------------------------------------------------------------------------

def test_delete_removes_the_run_only_after_confirmation(qtbot, runs_folder, monkeypatch):
    session, panel = make_panel(qtbot, runs_folder)
    questions = []
    answer = {"yes": False}
    monkeypatch.setattr(runs_panel, "confirm",
                        lambda parent, title, text: questions.append(text) or answer["yes"])
    select(panel, runs_folder, "beta")

    panel.delete_button.click()
    assert len(questions) == 1 and "beta" in questions[0]
    assert (runs_folder / "beta").is_dir()
    assert "beta" in table_rows(panel)

    answer["yes"] = True
    with qtbot.waitSignal(session.runs_changed, timeout=1000):
        panel.delete_button.click()
    assert len(questions) == 2
    assert not (runs_folder / "beta").exists()
    assert (runs_folder / "alpha").is_dir() and (runs_folder / "short").is_dir()
    assert set(table_rows(panel)) == {"alpha", "short"}


# --- duplicate with changes -------------------------------------------------------------------------

def test_duplicate_emits_the_edited_config_document(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    select(panel, runs_folder, "alpha")
    panel.duplicate_button.click()
    dialog = panel.duplicate_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.name_edit.text() == "alpha (copy)"  # the new run has a name from the start
    assert "press Start" in dialog.intro.text()
    original = RunDir(runs_folder / "alpha").config()
    assert dialog.train_form.widgets["lr"].text() == str(original["train"]["lr"])

    dialog.train_form.widgets["lr"].setText("-1")  # invalid: cannot be duplicated
    assert not dialog.ok_button.isEnabled() and "lr" in dialog.problem_label.text()
    dialog.train_form.widgets["lr"].setText("0.02")
    dialog.model_form.widgets["n_layer"].setText("2")
    dialog.val_data_edit.setText("held_out.txt")
    dialog.name_edit.setText("alpha, two layers")
    assert dialog.ok_button.isEnabled()
    with qtbot.waitSignal(panel.duplicate_requested, timeout=1000) as duplicated:
        dialog.ok_button.click()

    doc = duplicated.args[0]
    assert set(doc) == {"name", "generator", "config", "train", "data"}
    assert doc["name"] == "alpha, two layers"
    assert doc["generator"] == "text"
    assert doc["config"] == {**original["config"], "n_layer": 2}
    assert doc["train"] == {**original["train"], "lr": 0.02}
    assert doc["data"] == {"source": original["data"]["source"], "val_source": "held_out.txt"}
    assert RunDir(runs_folder / "alpha").config() == original  # the source run is untouched


def test_cancelled_duplicate_emits_nothing(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    select(panel, runs_folder, "alpha")
    panel.duplicate_button.click()
    with qtbot.assertNotEmitted(panel.duplicate_requested):
        panel.duplicate_dialog.reject()


# --- compare ----------------------------------------------------------------------------------------------

def open_compare(qtbot, panel, folder, *names):
    select(panel, folder, *names)
    panel.compare_button.click()
    dialog = panel.compare_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_compare_needs_two_runs(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    select(panel, runs_folder, "alpha")
    assert not panel.compare_button.isEnabled() and "two or more" in panel.compare_button.toolTip()
    select(panel, runs_folder, "alpha", "beta")
    assert panel.compare_button.isEnabled()


def test_compare_overlays_one_loss_and_one_metric_curve_per_run(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    dialog = open_compare(qtbot, panel, runs_folder, "alpha", "beta", "short")
    loss_items = dialog.loss_plot.getPlotItem().listDataItems()
    metric_items = dialog.metric_plot.getPlotItem().listDataItems()
    assert len(loss_items) == len(metric_items) == 3
    assert len({item.opts["pen"].color().name() for item in loss_items}) == 3
    legend = [label.text for _, label in dialog.loss_plot.getPlotItem().legend.items]
    assert sorted(legend) == ["alpha", "beta", "short"]
    for item in loss_items:
        events = RunDir(runs_folder / item.name()).events()
        progress = [e for e in events if e["event"] == "progress"]
        evals = [e for e in events if e["event"] == "eval"]
        xs, ys = item.getData()
        assert list(xs) == [e["step"] for e in progress] and len(progress) >= 2
        assert list(ys) == [e["loss"] for e in progress]
        metric_item = next(m for m in metric_items if m.name() == item.name())
        xs, ys = metric_item.getData()
        assert list(xs) == [e["step"] for e in evals]
        assert list(ys) == [e["metrics"]["val_bits_per_byte"] for e in evals]


def test_config_table_marks_exactly_the_differing_settings(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    dialog = open_compare(qtbot, panel, runs_folder, "alpha", "beta")
    view = dialog.config_view
    assert view.differing_keys == ["train.lr"]
    table = view.table
    keys = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert {"generator", "config.n_layer", "train.lr", "train.max_steps", "data.source"} <= set(keys)
    lr_row, steps_row = keys.index("train.lr"), keys.index("train.max_steps")
    columns = [table.horizontalHeaderItem(c).text() for c in range(2)]
    lrs = {name: table.item(lr_row, c).text() for c, name in enumerate(columns)}
    assert lrs == {"alpha": "0.01", "beta": "0.003"}
    assert all(table.item(lr_row, c).font().bold() for c in range(2))
    assert table.item(lr_row, 0).background().color() == runs_panel.DIFF_BACKGROUND
    assert not table.item(steps_row, 0).font().bold()
    assert table.item(steps_row, 0).background().style() == Qt.BrushStyle.NoBrush

    view.only_differences.setChecked(True)
    shown = [keys[r] for r in range(table.rowCount()) if not table.isRowHidden(r)]
    assert shown == ["train.lr"]

    dialog = open_compare(qtbot, panel, runs_folder, "alpha", "beta", "short")
    assert sorted(dialog.config_view.differing_keys) == ["train.lr", "train.max_steps"]


def test_previews_side_by_side_at_matching_steps(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    dialog = open_compare(qtbot, panel, runs_folder, "alpha", "beta", "short")
    previews = dialog.previews
    assert previews.steps == [5, 10]
    # It opens where every run has a preview ("short" stopped at step 5).
    assert previews.shown_steps == [5, 5, 5]
    for run, grid in zip(dialog.runs, previews.grids):
        expected = load_samples(dict(list_previews(run))[5])[1]
        assert [view.toPlainText() for view in grid.views] == [s.data for s in expected]
        assert expected and all(s.kind == "text" for s in expected)

    previews.slider.setValue(previews.steps.index(10))
    shown = dict(zip(dialog.names, previews.shown_steps))
    assert shown == {"alpha": 10, "beta": 10, "short": 5}
    alpha, short = dialog.names.index("alpha"), dialog.names.index("short")
    assert previews.captions[alpha].text() == "step 10"
    assert "no preview at step 10" in previews.captions[short].text()
    alpha_at_10 = load_samples(dict(list_previews(dialog.runs[alpha]))[10])[1]
    assert [v.toPlainText() for v in previews.grids[alpha].views] == [s.data for s in alpha_at_10]


def test_curves_of_a_resumed_run_have_one_point_per_step():
    events = [{"event": "progress", "step": 2, "loss": 3.0},
              {"event": "progress", "step": 4, "loss": 2.5},
              {"event": "progress", "step": 2, "loss": 2.9},  # resumed from the step-2 checkpoint
              {"event": "progress", "step": 4, "loss": 2.4},
              {"event": "progress", "step": 6, "loss": float("nan")},  # diverged
              {"event": "eval", "step": 4, "metrics": {"val_loss": 2.2}}]
    assert runs_panel.loss_series(events) == ([2, 4], [2.9, 2.4])
    assert runs_panel.held_out_metric(events, {}) == "val_loss"
    assert runs_panel.metric_series(events, "val_loss") == ([4], [2.2])



# --- measures that do not compare (FIDs of different feature extractors) -----------------------------

def as_gan_run(folder, name, fid, extractor):
    """A copy of a trained run whose held-out measure is an FID taken with `extractor`, as the
    image GAN's eval events carry it (metrics.val_extractor)."""
    shutil.copytree(folder / "short", folder / name)
    run = RunDir(folder / name)
    with open(run.events_path, "a", encoding="utf-8") as events:
        events.write(json.dumps({"event": "eval", "step": 5, "best_metric": "val_fid", "best": fid,
                                 "metrics": {"val_fid": fid, "val_extractor": extractor}}) + "\n")
    run.update(best={"metric": "val_fid", "value": fid, "step": 5})


@pytest.fixture
def mixed_measures(runs_folder):
    as_gan_run(runs_folder, "noise-a", 2.0, "own-classifier:noise")
    as_gan_run(runs_folder, "noise-b", 60.0, "own-classifier:noise")
    as_gan_run(runs_folder, "shapes", 30.0, "own-classifier:shapes")
    return runs_folder


def test_best_names_the_feature_extractor_and_sorting_never_ranks_across_measures(qtbot, mixed_measures):
    _, panel = make_panel(qtbot, mixed_measures)
    rows = table_rows(panel)
    assert rows["noise-a"]["Held-out metric"] == "val_fid (own-classifier:noise)"
    assert rows["shapes"]["Held-out metric"] == "val_fid (own-classifier:shapes)"
    assert rows["alpha"]["Held-out metric"] == "val_bits_per_byte"  # no extractor to name
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        panel.table.sortItems(COLUMN["Best"], order)
        measures = [panel.table.item(r, COLUMN["Held-out metric"]).text()
                    for r in range(panel.table.rowCount())]
        # Each measure's runs sit together: 60.0 (noise) is never ranked against 30.0 (shapes).
        groups = [m for i, m in enumerate(measures) if i == 0 or measures[i - 1] != m]
        assert len(groups) == len(set(measures)) == 3, measures
        noise = [float(panel.table.item(r, COLUMN["Best"]).text())
                 for r, m in enumerate(measures) if m.endswith("noise)")]
        assert noise == sorted(noise, reverse=order == Qt.SortOrder.DescendingOrder)


def test_the_shipped_demo_gan_names_the_extractor_of_its_fid(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "demo_runs", SHIPPED_DEMO_RUNS)
    _, panel = make_panel(qtbot, tmp_path / "runs")
    rows = table_rows(panel)
    events = RunDir(ROOT / "assets" / "demo" / "image").events()
    extractor = [e for e in events if e["event"] == "eval"][-1]["metrics"]["val_extractor"]
    assert rows["image demo"]["Held-out metric"] == f"val_fid ({extractor})"
    assert rows["text demo"]["Held-out metric"] == "val_bits_per_byte"


def test_compare_overlays_the_held_out_metric_only_of_runs_measured_alike(qtbot, mixed_measures):
    _, panel = make_panel(qtbot, mixed_measures)
    dialog = open_compare(qtbot, panel, mixed_measures, "noise-a", "noise-b", "shapes")
    drawn = sorted(item.name() for item in dialog.metric_plot.getPlotItem().listDataItems())
    assert drawn == ["noise-a", "noise-b"]
    assert dialog.metric_plot.getPlotItem().getAxis("left").labelText == "val_fid (own-classifier:noise)"
    assert "shapes — val_fid (own-classifier:shapes)" in dialog.metric_note.text()
    assert "not comparable" in dialog.metric_note.text()
    assert len(dialog.loss_plot.getPlotItem().listDataItems()) == 3  # losses: every run


# --- names, notes, context menu, theme, layout -------------------------------------------------------

def test_runs_show_their_name_with_the_folder_and_notes_as_tooltip(qtbot, runs_folder):
    RunDir(runs_folder / "alpha").update(name="Sea shanties", notes="lr sweep, high end")
    _, panel = make_panel(qtbot, runs_folder)
    rows = table_rows(panel)
    assert set(rows) == {"Sea shanties", "beta", "short"}  # no name: the folder's
    row = names_in_order(panel).index("Sea shanties")
    tip = panel.table.item(row, COLUMN["Run"]).toolTip()
    assert str(runs_folder / "alpha") in tip and "lr sweep, high end" in tip


def menu_entries(panel) -> dict[str, bool]:
    return {action.text(): action.isEnabled() for action in panel.context_menu().actions()
            if not action.isSeparator()}


def test_context_menu_offers_what_can_be_done_and_disables_the_rest(qtbot, runs_folder, tmp_path,
                                                                    monkeypatch):
    demo = tmp_path / "demo" / "text-demo"
    shutil.copytree(runs_folder / "short", demo)
    monkeypatch.setattr(api, "demo_runs", lambda: [demo])
    opened = []
    monkeypatch.setattr(runs_panel, "open_folder", opened.append)
    session, panel = make_panel(qtbot, runs_folder)

    select(panel, runs_folder, "alpha")
    assert menu_entries(panel) == {"Open": True, "Resume": True, "Duplicate with changes…": True,
                                   "Fine-tune from this run…": True, "Serve…": True,
                                   "Open run folder": True, "Compare": False, "Delete…": True}
    actions = {a.text(): a for a in panel.context_menu().actions()}
    actions["Open run folder"].trigger()
    assert opened == [str(runs_folder / "alpha")]
    with qtbot.waitSignal(session.run_changed, timeout=1000) as changed:
        actions["Open"].trigger()
    assert changed.args == [str(runs_folder / "alpha")] == [session.current_run]

    select(panel, runs_folder, "alpha", "beta")
    entries = menu_entries(panel)
    assert entries["Compare"] and not entries["Open"] and not entries["Resume"]
    panel.select_runs([str(demo)])
    entries = menu_entries(panel)
    assert entries["Open"] and entries["Duplicate with changes…"]
    assert entries["Fine-tune from this run…"]  # a demo model is a base to adapt
    assert not entries["Resume"] and not entries["Delete…"]


def test_right_click_on_another_run_acts_on_that_run(qtbot, runs_folder):
    _, panel = make_panel(qtbot, runs_folder)
    panel.show()
    select(panel, runs_folder, "beta")
    row = names_in_order(panel).index("alpha")
    position = panel.table.visualItemRect(panel.table.item(row, 0)).center()
    panel.table.customContextMenuRequested.emit(position)
    assert [r["run"] for r in panel.selected_rows()] == [str(runs_folder / "alpha")]
    assert panel.menu is not None and panel.menu.isVisible()
    panel.menu.close()
    panel.table.customContextMenuRequested.emit(QPoint(5, panel.table.viewport().height() - 2))
    assert [r["run"] for r in panel.selected_rows()] == [str(runs_folder / "alpha")]  # empty space


def test_deleting_the_current_run_moves_on_to_the_newest_run_of_its_generator(qtbot, runs_folder,
                                                                             monkeypatch):
    session, panel = make_panel(qtbot, runs_folder)
    monkeypatch.setattr(runs_panel, "confirm", lambda *a: True)
    beta = str(runs_folder / "beta")
    session.open_run(beta)
    generator = session.generator
    select(panel, runs_folder, "beta")
    with qtbot.waitSignal(session.run_changed, timeout=1000) as changed:
        panel.delete_selected()
    # Never the deleted run, and never "no run" while one of the generator remains (the demo
    # run at least): Ctrl+G and Generate go on working.
    remaining = session.newest_run(generator)
    assert remaining is not None and Path(remaining).is_dir()
    assert changed.args == [remaining] and session.current_run == remaining
    assert session.generator == generator


@pytest.fixture
def light_theme_after():
    yield
    theme.apply_theme("light")


def test_compare_charts_follow_the_theme(qtbot, runs_folder, light_theme_after):
    session, panel = make_panel(qtbot, runs_folder)
    theme.apply_theme("light")
    dialog = open_compare(qtbot, panel, runs_folder, "alpha", "beta")
    plots = (dialog.loss_plot, dialog.metric_plot)
    light = theme.chart_style()
    assert [p.backgroundBrush().color().name() for p in plots] == [light["background"]] * 2

    theme.apply_theme("dark")
    session.theme_changed.emit("dark")
    dark = theme.chart_style()
    for plot in plots:
        assert plot.backgroundBrush().color().name() == dark["background"]
        axis = plot.getPlotItem().getAxis("left")
        assert axis.textPen().color().name() == dark["foreground"]


def test_buttons_stay_in_view_at_900x600_and_the_run_column_takes_the_width(qtbot, runs_folder):
    for i in range(30):  # more runs than fit: the table scrolls, not the panel
        shutil.copytree(runs_folder / "short", runs_folder / f"short-{i:02d}")
    _, panel = make_panel(qtbot, runs_folder)
    panel.show()
    for width, height in ((900, 600), (1600, 1000)):
        panel.resize(width, height)
        qtbot.waitUntil(lambda: panel.width() == width and panel.height() == height, timeout=2000)
        for button in (panel.open_button, panel.resume_button, panel.duplicate_button,
                       panel.delete_button, panel.compare_button, panel.refresh_button):
            corner = button.mapTo(panel, button.rect().bottomRight())
            assert button.isVisible() and panel.rect().contains(corner), (width, button.text())
        assert panel.table.verticalScrollBar().isVisible()
        header = panel.table.horizontalHeader()
        others = sum(header.sectionSize(c) for c in range(1, len(COLUMN)))
        assert header.sectionSize(COLUMN["Run"]) >= panel.table.viewport().width() - others - 2
        assert not panel.table.horizontalScrollBar().isVisible()
