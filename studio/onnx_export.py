"""`studio export RUN --format onnx`: a run's model as ONNX graphs, checked with onnxruntime.

The generator describes its model as plain-tensor graphs (`Generator.onnx_graphs`, each an
`OnnxGraph`: a module, example inputs, more inputs to check and a tolerance); this module
exports each with torch.onnx, opens it with onnxruntime, runs the example and every check and
compares the outputs with the module's own. The largest absolute difference per graph goes
into the report and the manifest; one over the graph's tolerance stops the export. The folder
written holds NAME.onnx per graph and manifest.json (the run, checkpoint, generator, each
graph's inputs and outputs with shapes and dtypes and its error, and what the generator adds:
`Generator.onnx_manifest`, e.g. the tokenizer). It is written beside its place and renamed
into it when complete, so the folder is the whole export or absent, and an earlier export is
replaced only by a complete one.

The exporter is torch.onnx's default, dynamo (torch.export): on the built-in generators its
graphs ran faster in onnxruntime than the deprecated TorchScript exporter's (the demo text
decoder 0.88 ms a step against 1.19 ms, the demo GAN 4.7 ms against 5.6 ms for 16 images; 2 CPU
threads), though it takes longer to export (seconds rather than a second).

A LoRA run is exported with its adapters folded into the base (in memory, as `studio export
--merge` folds them): the graphs need no adapters and run as fast as the base.

onnx and onnxruntime are an optional extra (`pip install "aigc-studio[onnx]"`), imported
only here and only when an export is asked for.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

from studio import lora
from studio.api import load_run
from studio.errors import StudioError
from studio.export import folder_problem
from studio.runstore import read_json, swap_folder_in, write_json

MANIFEST = "manifest.json"
FORMAT = "aigc-studio-onnx"  # manifest.json's "format": what marks a folder as an ONNX export
FORMAT_VERSION = 1
PIP_COMMAND = 'pip install "aigc-studio[onnx]"  (or: pip install onnx onnxscript onnxruntime)'
# onnxruntime names its element types "tensor(float)" and so on; the manifest uses numpy's names.
ONNX_DTYPES = {"float": "float32", "double": "float64", "float16": "float16",
               "bfloat16": "bfloat16", "int64": "int64", "int32": "int32", "int8": "int8",
               "uint8": "uint8", "bool": "bool"}


def export_onnx(run: str, out: str, checkpoint: str | None = "best", device: str = "cpu") -> dict:
    """Export a run's model (its `checkpoint`: "best", "latest"/None, a name or a step) as ONNX
    graphs into the folder `out`, checked against the PyTorch model with onnxruntime. Returns
    the report: run, checkpoint, out, generator, lora_merged, notes, seconds and per graph its
    name, file, max_abs_error, tolerance and the number of inputs it was checked on. Raises
    StudioError for what cannot be exported, with nothing written to `out`."""
    started = time.monotonic()
    onnx_runtime = _onnx_runtime()
    target = Path(out)
    _refuse_target(target)
    source, gen, folder = load_run(run, checkpoint, device=device)
    notes = []
    lora_merged = any(lora.is_adapter(name) for name, _ in gen.model.named_parameters())
    if lora_merged:
        lora.merge(gen.model)  # in memory: the run itself is left as it is
        notes.append("a LoRA run: its adapters were merged into the base weights in the graphs")
    if gen.weights_note:
        notes.append(gen.weights_note)
    graphs = gen.onnx_graphs()
    if not graphs:
        raise StudioError(f"generator '{gen.name}' cannot be exported to ONNX: it describes no "
                          f"ONNX graphs (Generator.onnx_graphs). Sample it with `studio "
                          f"generate {source.path}` instead; nothing was written to {out}.")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        records = [_export_and_check(graph, tmp, onnx_runtime, gen.name, out) for graph in graphs]
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "run": str(source.path.resolve()), "checkpoint": folder.name,
                    "generator": {"name": gen.name, "version": gen.version,
                                  "modality": gen.modality},
                    "lora_merged": lora_merged, "graphs": records,
                    "model": gen.onnx_manifest(tmp)}
        write_json(tmp / MANIFEST, manifest)
        swap_folder_in(tmp, target)
    except OSError as exc:
        raise StudioError(f"cannot write {out}: {exc.strerror or exc}. Pick another folder; "
                          f"nothing was written there.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"run": str(source.path), "checkpoint": folder.name, "out": str(target),
            "generator": gen.name, "lora_merged": lora_merged, "notes": notes,
            "graphs": [{key: record[key] for key in
                        ("name", "file", "max_abs_error", "tolerance", "checked_inputs")}
                       for record in records],
            "seconds": round(time.monotonic() - started, 1)}


def _onnx_runtime():
    """onnxruntime, after checking that the exporter's libraries are there too."""
    try:
        import onnx  # noqa: F401 - torch.onnx's exporter needs it
        import onnxscript  # noqa: F401 - and this, for the dynamo exporter
        import onnxruntime
    except ImportError as exc:
        raise StudioError(f"exporting to ONNX needs the onnx, onnxscript and onnxruntime "
                          f"libraries ({exc.name} is not installed). Install them with: "
                          f"{PIP_COMMAND}") from None
    return onnxruntime


def is_onnx_export(folder: Path) -> bool:
    """Whether `folder` holds an export this module wrote (its manifest says so)."""
    try:
        return read_json(folder / MANIFEST, "manifest").get("format") == FORMAT
    except (StudioError, AttributeError):
        return False


def _refuse_target(target: Path) -> None:
    """`out` must be a new folder, an empty one or an earlier ONNX export (replaced): never a
    file, nor a folder of other things, which the export would throw away."""
    problem = folder_problem(target)
    if problem:
        blocking = next(p for p in (target, *target.parents) if p.exists())
        where = "is a file" if blocking == target else f"lies under {blocking}, which is a file"
        raise StudioError(f"{target} {where}; an ONNX export is a folder. Give a new folder.")
    if target.is_dir() and any(target.iterdir()) and not is_onnx_export(target):
        raise StudioError(f"{target} already exists and is not an ONNX export; nothing in it "
                          f"was changed. Export to a new folder.")


# --- one graph ---------------------------------------------------------------------------------

def _export_and_check(graph, folder: Path, onnx_runtime, gen_name: str, out: str) -> dict:
    """Export `graph` to folder/NAME.onnx, run it with onnxruntime on its example and checks,
    and return its manifest record; StudioError when it cannot be exported or run, or differs
    from the module by more than its tolerance."""
    import torch

    path = folder / f"{graph.name}.onnx"
    failed = f"generator '{gen_name}': its ONNX graph '{graph.name}'"
    graph.module.eval()
    try:
        # The exporter warns about every axis name it merges (e.g. two inputs' "batch"), and
        # without verbose=False narrates its passes on stdout: neither is news to a user.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph.module, tuple(graph.inputs), str(path),
                              input_names=list(graph.input_names),
                              output_names=list(graph.output_names),
                              dynamic_axes=dict(graph.dynamic_axes) or None,
                              dynamo=True, external_data=False, verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways, all said alike
        raise StudioError(f"{failed} could not be exported: {_first_line(exc)}. The "
                          f"generator's model is not exportable as it is (report it to its "
                          f"author); nothing was written to {out}.") from None
    try:
        session = onnx_runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise StudioError(f"{failed} was exported but onnxruntime cannot load it: "
                          f"{_first_line(exc)}; nothing was written to {out}.") from None
    worst = 0.0
    all_inputs = [tuple(graph.inputs), *map(tuple, graph.checks)]
    for inputs in all_inputs:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in zip(graph.input_names, inputs))
        with torch.no_grad():
            expected = graph.module(*inputs)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        try:
            got = session.run(list(graph.output_names),
                              {name: t.detach().cpu().numpy()
                               for name, t in zip(graph.input_names, inputs)})
        except Exception as exc:  # noqa: BLE001
            raise StudioError(f"{failed} fails in onnxruntime on inputs {shapes}: "
                              f"{_first_line(exc)}; nothing was written to {out}.") from None
        error = max(_max_abs_difference(want.detach().float().cpu().numpy(), have)
                    for want, have in zip(expected, got))
        if not error <= graph.tolerance:
            raise StudioError(f"{failed} differs from the PyTorch model by up to {error:.3g} "
                              f"(tolerance {graph.tolerance:g}) on inputs {shapes}; the export "
                              f"is not faithful, so nothing was written to {out}.")
        worst = max(worst, error)
    return {"name": graph.name, "file": path.name, "description": graph.description,
            "inputs": [_tensor_info(arg) for arg in session.get_inputs()],
            "outputs": [_tensor_info(arg) for arg in session.get_outputs()],
            "max_abs_error": worst, "tolerance": graph.tolerance,
            "checked_inputs": len(all_inputs)}


def _max_abs_difference(expected, got) -> float:
    """The largest |expected - got|; infinite where the shapes differ or only one is NaN (an
    infinity on both sides, as a masked logit, counts as equal)."""
    import numpy as np
    if expected.shape != got.shape:
        return float("inf")
    if not len(expected.reshape(-1)):
        return 0.0
    equal = (expected == got) | (np.isnan(expected) & np.isnan(got))
    difference = np.where(equal, 0.0, np.abs(expected.astype(np.float64) - got))
    return float(np.nan_to_num(difference, nan=np.inf).max())


def _tensor_info(arg) -> dict:
    """An onnxruntime input or output as the manifest lists it: name, shape (a number per
    fixed axis, a name per dynamic one) and numpy dtype."""
    element = str(arg.type).removeprefix("tensor(").removesuffix(")")
    return {"name": arg.name, "shape": list(arg.shape), "dtype": ONNX_DTYPES.get(element, element)}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
