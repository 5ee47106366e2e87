"""Task adaptation in the window (offscreen Qt): the task chosen in the Train form, labelled data
checked for it in the Data tab, a classifier's F1 in the charts, and classifiers' reports side by
side in the Runs tab's Compare."""

import json

import pytest

from studio.gui.data_panel import DataPanel
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.train_panel import TrainPanel


@pytest.fixture
def session(tmp_path):
    return Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))


def write_jsonl(path, rows):
    path.write_text("".join(row if isinstance(row, str) else json.dumps(row) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def reviews(positive: int, negative: int) -> list[dict]:
    return ([{"text": f"great lamp number {i}, it works", "label": "positive"} for i in range(positive)]
            + [{"text": f"broken kettle number {i}, awful", "label": "negative"} for i in range(negative)])


def panels(qtbot, session):
    """The Data and Train panels as the window wires them (the Train form's task reaches the
    Data panel through the session)."""
    data = DataPanel(session)
    train = TrainPanel(session, data)
    qtbot.addWidget(data)
    qtbot.addWidget(train)
    return data, train


def checked(qtbot, panel, task: str | None = None):
    """Wait for the panel's check (of the task given, when one is) to end."""
    def done():
        if "checking" in panel.status.text() or panel.recheck.isActive():
            return False
        if task is not None and panel.session.task != task:
            return False
        return panel.report is not None or panel.problem is not None
    qtbot.waitUntil(done, timeout=60_000)


def choose_task(train, task: str) -> None:
    train.gen_form.widgets["task"].setCurrentText(task)


def table(widget) -> list[list[str]]:
    return [[widget.item(r, c).text() if widget.item(r, c) else "" for c in range(widget.columnCount())]
            for r in range(widget.rowCount())]


# --- the task in the Train form ----------------------------------------------------------------

def test_the_task_is_a_choice_above_the_form_and_only_its_settings_show(qtbot, session):
    _, train = panels(qtbot, session)
    box = train.task_box
    choice = train.gen_form.widgets["task"]
    assert box is not None and choice.parentWidget() is box  # out of the long list, on top
    assert [choice.itemText(i) for i in range(choice.count())] == ["generate", "classify", "tag"]
    assert session.task == "generate"
    rows = train.gen_form.layout()
    assert not rows.isRowVisible(train.gen_form.widgets["pooling"])
    assert not rows.isRowVisible(train.gen_form.widgets["class_weights"])
    choose_task(train, "classify")
    assert session.task == "classify" and "class per text" in train.task_meaning.text()
    assert rows.isRowVisible(train.gen_form.widgets["pooling"])
    assert rows.isRowVisible(train.gen_form.widgets["class_weights"])
    choose_task(train, "tag")
    assert not rows.isRowVisible(train.gen_form.widgets["pooling"])
    assert rows.isRowVisible(train.gen_form.widgets["class_weights"])
    assert train.settings_document()["config"]["task"] == "tag"  # what Start hands to training


# --- labelled data in the Data tab -------------------------------------------------------------

def test_a_labelled_file_checked_for_classify_shows_label_counts_and_the_bad_line(qtbot, session, tmp_path):
    rows = reviews(6, 2)
    rows.insert(3, '{"text": "no label on this line"}\n')  # line 4
    data_file = write_jsonl(tmp_path / "reviews.jsonl", rows)
    data, train = panels(qtbot, session)
    choose_task(train, "classify")
    data.set_source(str(data_file))
    checked(qtbot, data, "classify")
    assert data.report is None and "cannot be read as labelled texts" in data.problem
    skipped = table(data.skipped)
    assert ["reviews.jsonl:4", "no label"] in skipped
    assert "data:" in train.problem.text() and not train.start_button.isEnabled()

    # The line fixed: usable, with each label's count and share.
    del rows[3]
    write_jsonl(data_file, rows)
    data.check.click()
    checked(qtbot, data, "classify")
    assert data.report is not None, data.problem
    assert data.labels.isVisibleTo(data)
    assert [row[:3] for row in table(data.labels)] == [["positive", "6", "75.0%"],
                                                       ["negative", "2", "25.0%"]]
    assert data.skipped.rowCount() == 0


def test_an_imbalanced_file_gets_a_warning(qtbot, session, tmp_path):
    data_file = write_jsonl(tmp_path / "reviews.jsonl", reviews(40, 2))
    data, train = panels(qtbot, session)
    choose_task(train, "classify")
    data.set_source(str(data_file))
    checked(qtbot, data, "classify")
    assert data.report is not None, data.problem
    assert data.notes.isVisibleTo(data) and "class imbalance" in data.notes.text()
    assert "'negative' only 2" in data.notes.text()


def test_a_labelled_file_checked_for_generation_gets_the_hint_to_choose_the_task(qtbot, session, tmp_path):
    data_file = write_jsonl(tmp_path / "reviews.jsonl", reviews(6, 2))
    data, train = panels(qtbot, session)
    assert session.task == "generate"
    data.set_source(str(data_file))
    checked(qtbot, data, "generate")
    assert "looks like labelled data" in data.problem
    assert "choose the task classify" in data.problem
    assert "--" not in data.problem  # window words, no command-line flags
    assert "looks like labelled data" in train.problem.text()

    # Choosing the task checks the data again, now as labelled texts.
    choose_task(train, "classify")
    checked(qtbot, data, "classify")
    assert data.report is not None, data.problem
    assert "looks like" not in data.notes.text()


def test_a_labelled_csv_read_as_a_corpus_still_says_it_looks_labelled(qtbot, session, tmp_path):
    """Read for generation, a CSV is plain text and passes: the hint says what it looks like."""
    lines = ["text,label"] + [f"the lamp number {i} works well enough for me,positive" for i in range(40)]
    data_file = tmp_path / "reviews.csv"
    data_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data, _ = panels(qtbot, session)
    data.set_source(str(data_file))
    checked(qtbot, data, "generate")
    assert data.report is not None, data.problem
    assert "looks like labelled data" in data.notes.text() and "classify" in data.notes.text()


# --- held-out data of one's own -----------------------------------------------------------------

def held_out_reviews(path):
    """Four held-out reviews, one with a class the training file never has."""
    return write_jsonl(path, [
        {"text": "great lamp, it works", "label": "positive"},
        {"text": "broken kettle, awful", "label": "negative"},
        {"text": "the chair comes in black and grey", "label": "neutral"},
        {"text": "awful mug, I am returning it", "label": "negative"}])


def test_a_held_out_file_with_a_label_never_seen_in_training_gets_a_warning(qtbot, session, tmp_path):
    data_file = write_jsonl(tmp_path / "reviews.jsonl", reviews(6, 4))
    held_out = held_out_reviews(tmp_path / "held-out.jsonl")
    data, train = panels(qtbot, session)
    choose_task(train, "classify")
    data.set_sources(str(data_file), str(held_out))
    checked(qtbot, data, "classify")
    assert data.report is not None, data.problem
    warning = next(line for line in data.notes.text().splitlines() if "never seen in training" in line)
    assert warning.startswith("⚠") and "'neutral'" in warning and data.notes.isVisibleTo(data)
    # All the training file trains; the held-out count beside it is the held-out file's.
    assert "examples: 10 · held-out examples: 4" in data.summary.text().splitlines()
    assert train.start_button.isEnabled(), train.problem.text()  # a warning, not a refusal


def test_a_bad_line_of_the_held_out_file_is_listed_like_the_training_files(qtbot, session, tmp_path):
    data_file = write_jsonl(tmp_path / "reviews.jsonl", reviews(6, 4))
    held_out = write_jsonl(tmp_path / "held-out.jsonl", [*reviews(1, 1), '{"text": "no label"}\n'])
    data, train = panels(qtbot, session)
    choose_task(train, "classify")
    data.set_sources(str(data_file), str(held_out))
    checked(qtbot, data, "classify")
    assert data.report is None and "held-out.jsonl" in data.problem
    assert ["held-out.jsonl:3", "no label"] in table(data.skipped)
    assert not train.start_button.isEnabled()


# The Train form for a few seconds' classifier (model, then training settings).
TINY_FORM = {"n_layer": "1", "n_head": "2", "n_embd": "32", "block_size": "64", "batch_size": "16"}
TINY_TRAINING = {"max_steps": "3", "eval_every": "3", "preview_every": "0", "checkpoint_every": "1000",
                 "log_every": "1", "lr": "3e-3", "warmup_steps": "2"}


def test_start_with_held_out_data_evaluates_the_run_on_that_file_and_duplicate_and_resume_restore_it(
        qtbot, session, tmp_path, monkeypatch):
    from studio import api
    from studio.runstore import RunDir
    data_file = write_jsonl(tmp_path / "reviews.jsonl", reviews(12, 8))
    held_out = held_out_reviews(tmp_path / "held-out.jsonl")
    data, train = panels(qtbot, session)
    choose_task(train, "classify")
    data.set_sources(str(data_file), str(held_out))
    checked(qtbot, data, "classify")
    assert data.report is not None, data.problem
    train.gen_form.set_values(TINY_FORM)
    train.train_form.set_values(TINY_TRAINING)
    train.device.setCurrentText("cpu")
    launched = []
    start = train.trainer.start
    monkeypatch.setattr(train.trainer, "start",
                        lambda args, run_dir: (launched.append(args), start(args, run_dir)))
    try:
        assert train.start_button.isEnabled(), train.problem.text()
        train.start_button.click()
        (args,) = launched
        assert args[args.index("--val-data") + 1] == str(held_out)
        assert args[args.index("--data") + 1] == str(data_file)
        qtbot.waitUntil(lambda: not train.trainer.running, timeout=180_000)
    finally:
        train.trainer.kill()
    run = RunDir(train.run_dir)
    assert run.info()["status"] == "done", train.error_message.text()
    # The run records its held-out data, as `studio train --val-data` records it ...
    assert run.config()["data"] == {"source": str(data_file), "val_source": str(held_out)}
    report = json.loads((run.path / "data_report.json").read_text(encoding="utf-8"))
    assert report["summary"]["val_examples"] == 4 and report["summary"]["examples"] == 20
    # ... and its held-out metrics are the held-out file's: its 4 lines are the support.
    evaluated = api.evaluate(str(run.path), device="cpu")
    assert evaluated["report"]["macro avg"]["support"] == 4

    # Duplicate and Resume put the run's data, held-out data too, back in the Data tab.
    data.set_sources(None, None)
    checked(qtbot, data)
    assert data.val_source() is None and session.val_source is None
    train.duplicate({**run.config(), "name": "again"})
    assert data.source() == str(data_file) and data.val_source() == str(held_out)
    checked(qtbot, data, "classify")
    assert session.val_source == str(held_out)

    data.set_sources(None, None)
    checked(qtbot, data)
    monkeypatch.setattr(train.trainer, "start", lambda args, run_dir: launched.append(args))
    train.resume_run(str(run.path))
    assert launched[-1] == ["--resume", str(run.path)]
    assert data.source() == str(data_file) and data.val_source() == str(held_out)


# --- a classifier's charts ---------------------------------------------------------------------

def test_a_classifiers_macro_f1_has_its_chart_and_the_best_point_is_marked_on_it(qtbot):
    from studio.gui.charts import SCORE_RANGE, Charts
    charts = Charts()
    qtbot.addWidget(charts)
    charts.add({"event": "start", "step": 0, "max_steps": 30, "unit": "tokens"})
    evals = [(10, 1.05, 0.40, True), (20, 0.90, 0.72, True), (30, 0.95, 0.61, False)]
    for step, loss, f1, is_best in evals:
        charts.add({"event": "progress", "step": step, "loss": loss + 0.1, "lr": 1e-3,
                    "items_per_s": 100.0, "unit": "tokens"})
        charts.add({"event": "eval", "step": step, "best_metric": "val_macro_f1", "is_best": is_best,
                    "metrics": {"val_loss": loss, "val_macro_f1": f1, "val_accuracy": f1 + 0.1}})
    charts.redraw()
    assert charts.metric_plot_shown and charts.metric_plot.titleLabel.text == "held-out macro F1"
    assert list(charts.score.getData()[1]) == [0.40, 0.72, 0.61]
    assert charts.score in charts.metric_plot.items and charts.best in charts.metric_plot.items
    assert list(charts.best.getData()[0]) == [20] and list(charts.best.getData()[1]) == [0.72]
    assert tuple(charts.metric_plot.viewRange()[1]) == pytest.approx(SCORE_RANGE)  # F1's 0..1
    # The held-out loss stays with the training loss, in its units.
    assert charts.held_out in charts.loss_plot.items
    assert list(charts.held_out.getData()[1]) == [1.05, 0.90, 0.95]
    legend = [label.text for _, label in charts.metric_plot.legend.items]
    assert legend == ["macro F1", "best checkpoint (by macro F1)"]


# --- classifiers compared in the Runs tab ------------------------------------------------------

TINY = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=64", "batch_size=16", "device=cpu",
        "eval_every=3", "preview_every=0", "checkpoint_every=1000", "lr=3e-3", "warmup_steps=2"]


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    """Two tiny classifiers of the built-in reviews (one with a held-out file of its own) and a
    tiny generation run, trained once for the module (a few seconds each)."""
    from studio import api
    root = tmp_path_factory.mktemp("task-runs")
    held_out = write_jsonl(root / "held-out.jsonl", [
        {"text": "I love this lamp, it works perfectly.", "label": "positive"},
        {"text": "The kettle broke after two days.", "label": "negative"},
        {"text": "The chair comes in black and grey.", "label": "neutral"},
        {"text": "Awful mug, I am returning it.", "label": "negative"}])
    corpus = root / "corpus.txt"
    corpus.write_text("the sea is calm and the night is long we sail at dawn\n" * 60, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        for name, data, val_data, task in (("first", "builtin:sentiment", None, "classify"),
                                           ("second", "builtin:sentiment", str(held_out), "classify"),
                                           ("writer", str(corpus), None, "generate")):
            status, _ = api.train("text", data=data, val_data=val_data, run_dir=str(root / "runs" / name),
                                  settings=[*TINY, f"task={task}"], max_steps=3, events="none")
            assert status == "done"
    return root / "runs"


def test_compare_shows_each_classifiers_report_side_by_side(qtbot, task_runs, monkeypatch):
    from studio import api
    from studio.gui.runs_panel import REPORT_COLUMNS, RunsPanel
    monkeypatch.setattr(api, "demo_runs", lambda: [])
    session = Session(Settings(runs_folder=str(task_runs), default_device="cpu"))
    panel = RunsPanel(session)
    qtbot.addWidget(panel)
    panel.select_runs([str(task_runs / name) for name in ("first", "second", "writer")])
    panel.compare_button.click()
    dialog = panel.compare_dialog
    reports = dialog.reports
    assert reports is not None and dialog.tabs.indexOf(reports) >= 0
    qtbot.waitUntil(reports.finished_all, timeout=120_000)
    assert not reports.problems, reports.problems

    rows = [reports.table.verticalHeaderItem(r).text() for r in range(reports.table.rowCount())]
    assert rows[:3] == ["negative", "neutral", "positive"]
    assert {"accuracy", "macro avg", "weighted avg"} <= set(rows)
    headers = [reports.table.horizontalHeaderItem(c).text() for c in range(reports.table.columnCount())]
    assert sorted(reports.names) == ["first", "second"]  # in the table's order, newest first
    assert headers == [f"{name}\n{column}" for name in reports.names for column in REPORT_COLUMNS]
    for name in ("first", "second"):  # each run's rows: its own report, as api.evaluate gives it
        report = api.evaluate(str(task_runs / name), checkpoint="best", device="cpu")["report"]
        column = headers.index(f"{name}\nF1")
        for r, row in enumerate(rows):
            expected = report["accuracy"] if row == "accuracy" else \
                (report["classes"].get(row) or report[row])["f1"]
            assert reports.table.item(r, column).text() == f"{expected:.3f}", (name, row)
    support = headers.index("second\nsupport")
    assert reports.table.item(rows.index("macro avg"), support).text() == "4"  # its held-out file

    measured = {name: label.text() for name, label in zip(reports.names, reports.sources)}
    assert "held-out 10% of builtin:sentiment" in measured["first"]
    assert "held-out.jsonl" in measured["second"] and "step_" in measured["second"]
    assert "writer" in reports.not_comparable.text() and "generation run" in reports.not_comparable.text()
    dialog.close()


def test_a_failing_evaluation_is_said_in_its_runs_line_not_raised(qtbot, task_runs, monkeypatch):
    from studio import api
    from studio.gui.runs_panel import RunsPanel
    monkeypatch.setattr(api, "demo_runs", lambda: [])
    evaluate = api.evaluate

    def broken(path, **kwargs):
        if path.endswith("first"):
            raise SystemExit("a plugin gave up")
        return evaluate(path, **kwargs)
    monkeypatch.setattr(api, "evaluate", broken)
    session = Session(Settings(runs_folder=str(task_runs), default_device="cpu"))
    panel = RunsPanel(session)
    qtbot.addWidget(panel)
    panel.select_runs([str(task_runs / name) for name in ("first", "second")])
    panel.compare_button.click()
    reports = panel.compare_dialog.reports
    qtbot.waitUntil(reports.finished_all, timeout=120_000)
    first, second = reports.names.index("first"), reports.names.index("second")
    assert "could not be evaluated: SystemExit: a plugin gave up" in reports.sources[first].text()
    assert second in reports.results and first not in reports.results
    assert reports.table.rowCount() > 0
    panel.compare_dialog.close()
