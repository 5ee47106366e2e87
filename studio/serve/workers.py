"""The served models and the threads that own them.

Each model has one worker thread: it alone calls the generator (torch work never runs on the
event loop) and takes requests from a bounded queue. A request is a Job; the worker tells the
job's asyncio side what happened through `Job.send` (loop.call_soon_threadsafe), and the
asyncio side tells the worker to stop working for it through `Job.cancel` (the client went
away, the request timed out), which the worker checks between steps.

- TextWorker: continuous batching through the generator's Decoder: between steps it adds
  queued choices into free rows and drops the rows of cancelled jobs; each step is one
  forward pass for all rows. Without a decoder it streams one choice at a time.
- BatchWorker: image and video runs (up to max_batch requests in one `sample_batch`), and
  classify/tag runs (the texts of up to max_batch requests in one `sample`).
"""

from __future__ import annotations

import asyncio
import collections
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.contract import SampleRequest
from studio.errors import StudioError
from studio.serve import ServeSettings
from studio.serve.validate import ApiError, bad

IDLE_WAIT = 0.1  # seconds a worker waits for a request before checking whether to stop
RATE_WINDOW = 10.0  # seconds of work the tokens/s gauge averages over


# --- what a worker tells a request -------------------------------------------------------------

@dataclass
class Started:
    """A choice got its row: its prompt became `prompt_tokens` tokens."""
    choice: int
    prompt_tokens: int


@dataclass
class Piece:
    """New text of a choice; `done` with its finish reason ("stop" or "length")."""
    choice: int
    text: str
    done: bool = False
    reason: str | None = None
    tokens: int = 0  # tokens the choice has produced so far


@dataclass
class Answer:
    """A batch request's samples (image, video, classify)."""
    samples: list


@dataclass
class Failed:
    error: ApiError


class Job:
    """One request on its way through a worker. Made on the event loop; `send` may be called
    from any thread."""

    def __init__(self, loop, ask):
        self.loop = loop
        self.ask = ask
        self.events: asyncio.Queue = asyncio.Queue()
        self._cancelled = threading.Event()

    def send(self, event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody waits for this job any more
            self.cancel()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


SHUTTING_DOWN = ApiError(503, "the server is shutting down; send the request again when it is "
                              "back.", type="server_error", code="shutting_down")


def generator_failed(model: "ServedModel", exc: Exception) -> ApiError:
    """A bug in the generator's code (not the request): the traceback goes to the server's
    stderr, the client gets one line."""
    print(f"studio serve: generator '{model.gen.name}' failed serving {model.name}:",
          file=sys.stderr)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return ApiError(500, f"generator '{model.gen.name}' failed on this request "
                         f"({type(exc).__name__}); the server's log has the details.",
                    type="server_error", code="generator_failed")


def refused(exc: StudioError) -> ApiError:
    """What the generator refused (a prompt it cannot take, a class it does not have)."""
    return bad(str(exc), code="refused_by_generator")


# --- the served models ---------------------------------------------------------------------------

@dataclass
class ServedModel:
    """A run loaded for serving: its generator, what kind of requests it answers, and the
    worker that owns it."""

    name: str  # the model id: the run folder's name
    run: Any  # RunDir
    gen: Any
    checkpoint: str
    kind: str  # "text", "answers" (classify/tag), "image", "video"
    task: str | None = None
    width: int = 0  # images and clips: what the run makes
    height: int = 0
    frames: int = 0
    worker: "Worker | None" = None

    @property
    def lineage(self) -> dict:
        """What every answer says it came from, as api.generate marks samples."""
        said = {"run": str(self.run.path), "checkpoint": self.checkpoint,
                "generator": self.gen.name}
        if self.gen.weights_note:
            said["note"] = self.gen.weights_note
        return said


def run_names(paths: list[str]) -> list[str]:
    """The model id of each run (its folder's name), refusing two runs of one name."""
    from studio.runstore import RunDir
    names: dict[str, str] = {}
    for path in paths:
        if not str(path).strip():
            raise StudioError("a run folder is empty: give a path (is a shell variable unset?).")
        name = RunDir.open(Path(path)).path.name
        if name in names:
            raise StudioError(f"two runs are named '{name}' ({names[name]} and {path}): a model's "
                              f"id is its run folder's name, so serve one of them or rename a "
                              f"folder.")
        names[name] = str(path)
    return list(names)


def load_models(paths: list[str], checkpoint: str | None = None,
                device: str = "auto") -> list[ServedModel]:
    """Every run loaded (weights verified) before the server listens; the first that cannot
    load stops the start with its reason. Image and video runs make one sample each, which
    tells the size they make and shows they work."""
    from studio import api
    names = run_names(paths)
    models = []
    for name, path in zip(names, paths):
        try:
            run, gen, folder = api.load_run(path, checkpoint, device)
        except StudioError as exc:
            raise StudioError(f"cannot serve {path}: {exc}") from None
        model = ServedModel(name, run, gen, folder.name, kind_of(gen),
                            task=getattr(getattr(gen, "task", None), "kind", None))
        if model.kind in ("image", "video"):
            measure(model)
        models.append(model)
    return models


def kind_of(gen) -> str:
    if gen.modality == "text":
        return "answers" if getattr(gen, "task", None) is not None else "text"
    return gen.modality


def measure(model: ServedModel) -> None:
    import torch
    params = model.gen.SampleConfig()
    try:
        with torch.no_grad():
            sample = model.gen.sample(params, n=1, seed=0)[0]
    except StudioError as exc:
        raise StudioError(f"cannot serve {model.run.path}: a first sample failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the generator's bug: one line, not a traceback
        said = " ".join(str(exc).split())
        raise StudioError(f"cannot serve {model.run.path}: generator '{model.gen.name}' failed "
                          f"making a first sample ({type(exc).__name__}{': ' + said if said else ''}"
                          f"). Fix the generator, or report it to its author.") from None
    shape = sample.data.shape  # (H, W, C) or (T, H, W, C)
    model.height, model.width = int(shape[-3]), int(shape[-2])
    model.frames = int(shape[0]) if model.kind == "video" else 0


# --- workers -----------------------------------------------------------------------------------

class Worker(threading.Thread):
    """The thread that owns one model's generator and its queue of jobs. Whatever it holds
    when it stops (queued, taken, under way) is answered: 503 on shutdown, 500 if it failed."""

    def __init__(self, model: ServedModel, settings: ServeSettings, metrics=None):
        super().__init__(name=f"serve-{model.name}", daemon=True)
        self.model, self.settings, self.metrics = model, settings, metrics
        self.jobs: queue.Queue = queue.Queue(maxsize=settings.queue)
        self.stopping = threading.Event()
        self.failure: ApiError | None = None  # what every request gets once the worker failed
        self.held: list[Job] = []  # taken from the queue, not yet under way
        self.under_way: list[Job] = []  # being generated now
        self.active = 0  # rows (text) or requests (batches) under way
        self._rate = collections.deque()  # (time, tokens or samples)
        self._rate_lock = threading.Lock()
        model.worker = self

    # --- the asyncio side ----------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self.failure is not None:
            raise self.failure
        if self.stopping.is_set():
            raise SHUTTING_DOWN
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(429, f"model '{self.model.name}' has {self.settings.queue} requests "
                                f"waiting, as many as this server queues (--queue); try again "
                                f"shortly.", type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": "1"}) from None

    @property
    def queued(self) -> int:
        return self.jobs.qsize() + len(self.held)

    def stop(self) -> None:
        self.stopping.set()

    # --- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        import torch
        try:
            with torch.no_grad():
                self.serve()
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave requests hanging
            generator_failed(self.model, exc)  # its traceback, in the server's log
            self.failure = ApiError(500, f"model '{self.model.name}' failed and is no longer "
                                         f"served ({type(exc).__name__}); the server's log has "
                                         f"the details.", type="server_error",
                                    code="model_failed")
            self.stopping.set()
        self.answer_all_left(self.failure or SHUTTING_DOWN)

    def serve(self) -> None:  # pragma: no cover - interface
        """Answer jobs until `stopping` is set."""
        raise NotImplementedError

    def answer_all_left(self, error: ApiError) -> None:
        for job in dict.fromkeys(self.under_way + self.held):  # each once, in order
            job.send(Failed(error))
        self.under_way, self.held, self.active = [], [], 0
        while True:
            try:
                self.jobs.get_nowait().send(Failed(error))
            except queue.Empty:
                return

    def next_job(self, wait: bool) -> Job | None:
        """A job that is still wanted, or None (none queued; `wait`: after a short wait)."""
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_WAIT) if wait else self.jobs.get_nowait()
            except queue.Empty:
                return None
            if not job.cancelled:
                return job

    def count(self, amount: int) -> None:
        """`amount` tokens (or samples) made just now, for the rate /metrics shows."""
        now = time.monotonic()
        with self._rate_lock:
            self._rate.append((now, amount))
        if self.metrics is not None:
            self.metrics.generated(self.model, amount)

    def rate(self) -> float:
        """Tokens (or samples) a second over the last RATE_WINDOW seconds."""
        now = time.monotonic()
        with self._rate_lock:
            while self._rate and self._rate[0][0] < now - RATE_WINDOW:
                self._rate.popleft()
            return sum(amount for _, amount in self._rate) / RATE_WINDOW


class TextWorker(Worker):
    """Text generation: continuous batching through the generator's decoder, or one choice at
    a time through `stream` for generators without one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: dict[int, tuple[Job, int]] = {}  # decoder row -> (job, choice)
        self.unsent: dict[int, str] = {}  # decoder row -> text of an answer not streamed, so far
        self.waiting: collections.deque = collections.deque()  # (job, choice) not yet in a row

    def serve(self) -> None:
        import torch
        if getattr(self.model.gen.device, "type", "cpu") == "cpu":
            # Decoding a token at a time is too small a job to share between CPU threads, and
            # from a thread other than the main one a second torch thread costs: 64 tokens of
            # the demo model took 74-80 ms with 2 threads, 54 ms with 1 (as in the main thread
            # with 2); a 6x384 model 380 / 352 ms at batch 1 and 662 / 607 at batch 8.
            torch.set_num_threads(1)
        decoder = self.model.gen.open_decoder(self.settings.max_batch)
        if decoder is None:
            self.serve_one_at_a_time()
        else:
            self.serve_batched(decoder)

    def serve_batched(self, decoder) -> None:
        rows = self.rows
        while not self.stopping.is_set():
            self.admit(decoder)
            for row, (job, _) in list(rows.items()):
                if job.cancelled:
                    decoder.drop(row)
                    self.free(row)
            if not rows:
                continue
            try:
                pieces = decoder.step()
            except Exception as exc:  # noqa: BLE001 - the decoder's state is lost with it
                failure = generator_failed(self.model, exc)
                for job in self.under_way:
                    job.send(Failed(failure))
                    job.cancel()
                rows.clear()
                self.unsent.clear()
                self.recount()
                decoder = self.model.gen.open_decoder(self.settings.max_batch)
                continue
            self.count(len(pieces))
            for piece in pieces:
                job, choice = rows[piece.row]
                # An answer that is not streamed goes to its client whole: one hand-off to the
                # event loop a choice, not one a token (those woke it and fought this thread
                # for the GIL every step: a 64-token answer took 1.4x its decoding time).
                text = piece.text if job.ask.stream else self.unsent.pop(piece.row, "") + piece.text
                if piece.done:
                    self.free(piece.row)
                if job.ask.stream or piece.done:
                    job.send(Piece(choice, text, piece.done, piece.reason, piece.tokens))
                else:
                    self.unsent[piece.row] = text

    def free(self, row: int) -> None:
        del self.rows[row]
        self.unsent.pop(row, None)
        self.recount()

    def recount(self) -> None:
        """The jobs and rows under way, after rows were taken or freed."""
        self.under_way = list(dict.fromkeys(job for job, _ in self.rows.values()))
        self.active = len(self.rows)

    def admit(self, decoder) -> None:
        """Fill free rows with waiting choices (blocking briefly only when nothing runs)."""
        rows, waiting = self.rows, self.waiting
        while len(rows) < decoder.max_rows:
            if not waiting:
                job = self.next_job(wait=not rows)
                if job is None:
                    break
                waiting.extend((job, choice) for choice in range(len(job.ask.choices)))
                self.held = [job]
            job, choice = waiting.popleft()
            if not waiting:
                self.held = []
            if job.cancelled:
                continue
            _, prompt, seed = job.ask.choices[choice]
            try:
                row = decoder.add(job.ask.params, seed, prompt)
            except StudioError as exc:
                self.refuse(job, refused(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - the generator's bug, said to the client
                self.refuse(job, generator_failed(self.model, exc))
                continue
            rows[row] = (job, choice)
            self.recount()
            job.send(Started(choice, decoder.prompt_tokens(row)))

    def refuse(self, job: Job, error: ApiError) -> None:
        """A job whose choice could not start: it is answered with the error, and its other
        choices leave (their rows are dropped at the next step)."""
        job.send(Failed(error))
        job.cancel()
        kept = [(j, c) for j, c in self.waiting if j is not job]
        self.waiting.clear()
        self.waiting.extend(kept)
        if not self.waiting:
            self.held = []

    def serve_one_at_a_time(self) -> None:
        gen = self.model.gen
        while not self.stopping.is_set():
            job = self.next_job(wait=True)
            if job is None:
                continue
            self.under_way, self.active = [job], 1
            try:
                for choice, (_, prompt, seed) in enumerate(job.ask.choices):
                    if job.cancelled or self.stopping.is_set():
                        break
                    self.stream_choice(job, choice, gen.stream(job.ask.params, seed, prompt))
            except StudioError as exc:
                job.send(Failed(refused(exc)))
            except Exception as exc:  # noqa: BLE001 - the generator's bug, said to the client
                job.send(Failed(generator_failed(self.model, exc)))
            if not self.stopping.is_set():  # else it is answered as the worker stops
                self.under_way, self.active = [], 0

    def stream_choice(self, job: Job, choice: int, pieces) -> None:
        """One choice through `stream`: a piece is counted as a token (the stream says no
        more), and the choice ended by length when it made max_new_tokens of them."""
        made = 0
        for text in pieces:
            if job.cancelled or self.stopping.is_set():
                pieces.close()
                return
            made += 1
            self.count(1)
            job.send(Piece(choice, text, tokens=made))
        limit = getattr(job.ask.params, "max_new_tokens", None)
        job.send(Piece(choice, "", True, "length" if made == limit else "stop", made))


class BatchWorker(Worker):
    """Image and video runs, and classify/tag runs: up to max_batch queued requests answered
    in one call."""

    def serve(self) -> None:
        while not self.stopping.is_set():
            first = self.next_job(wait=True)
            if first is None:
                continue
            batch = [first]
            while len(batch) < self.settings.max_batch:
                job = self.next_job(wait=False)
                if job is None:
                    break
                batch.append(job)
            self.under_way, self.active = batch, len(batch)
            for job, outcome in zip(batch, self.answer(batch)):
                if isinstance(outcome, ApiError):
                    job.send(Failed(outcome))
                else:
                    self.count(len(outcome))
                    job.send(Answer(outcome))
            self.under_way, self.active = [], 0

    def answer(self, batch: list[Job]) -> list:
        """Each job's samples, or the ApiError it gets. A batch the generator refuses is
        answered again one request at a time, so only the request at fault is refused."""
        try:
            return self.call(batch)
        except StudioError as exc:
            if len(batch) == 1:
                return [refused(exc)]
        except Exception as exc:  # noqa: BLE001 - the generator's bug, said to the clients
            if len(batch) == 1:
                return [generator_failed(self.model, exc)]
        return [self.answer([job])[0] for job in batch]

    def call(self, batch: list[Job]) -> list[list]:
        gen = self.model.gen
        if self.model.kind == "answers":  # every text of the batch in one call
            texts = [text for job in batch for text in job.ask.texts]
            samples = gen.sample(batch[0].ask.params, n=1, seed=0, prompt=texts)
            answers, start = [], 0
            for job in batch:
                answers.append(samples[start:start + len(job.ask.texts)])
                start += len(job.ask.texts)
            return answers
        return gen.sample_batch([SampleRequest(job.ask.params, job.ask.n, job.ask.seed,
                                               job.ask.prompt) for job in batch])


def start_workers(models: list[ServedModel], settings: ServeSettings, metrics=None) -> list[Worker]:
    workers = [(TextWorker if model.kind == "text" else BatchWorker)(model, settings, metrics)
               for model in models]
    for worker in workers:
        worker.start()
    return workers


def stop_workers(workers: list[Worker], wait: float = 10.0) -> None:
    """Stop every worker; each answers what it still holds (503) as it stops."""
    for worker in workers:
        worker.stop()
    deadline = time.monotonic() + wait
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
