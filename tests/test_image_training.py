"""The image GAN really trains: bit-exact resume, conditional samples of the asked class, FID on
MNIST falling well below the untrained generator's, and FID with local Inception weights."""

import numpy as np
import torch

from conftest import SHARED
from generators.image import ImageGenerator
from generators.image.data import load_images
from generators.image.evaluation import extract_features, train_extractor
from image_fixtures import tiny_settings, write_shapes_folder
from safetensors.numpy import load_file
from studio import api
from studio.callbacks import EvalMode
from studio.runstore import RunDir
from studio.testing import StopAfter

CPU = ["device=cpu", "log_every=1", "eval_every=0", "checkpoint_every=0"]


def progress_losses(run) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in RunDir(run).events() if e["event"] == "progress"}


def final_tensors(run) -> dict:
    folder = RunDir(run).checkpoints()[-1].folder
    return {**load_file(str(folder / "model.safetensors")), **load_file(str(folder / "trainer.safetensors"))}


def test_stop_and_resume_is_bit_exact_on_cpu(tmp_path):
    """Stopped at step 4 and resumed to 10 equals 10 steps straight: every loss, every weight,
    the moving average, both optimizers and the RNG states. Lazy R1 and previews run in between
    (previews and evaluation must not disturb the training RNG)."""
    data = str(write_shapes_folder(tmp_path / "data"))
    settings = tiny_settings({"r1_gamma": 1.0, "r1_every": 3}) + CPU + ["preview_every=3"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    status, _ = api.train(ImageGenerator, data=data, run_dir=str(straight), max_steps=10,
                          settings=settings, events="none")
    assert status == "done"
    status, _ = api.train(ImageGenerator, data=data, run_dir=str(split), max_steps=10,
                          settings=settings, events="none", callbacks=[StopAfter(4)])
    assert status == "stopped" and RunDir(split).checkpoints()[-1].step == 4
    status, _ = api.train(ImageGenerator, resume=str(split), max_steps=10, events="none")
    assert status == "done"
    a, b = progress_losses(straight), progress_losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert [a[s] for s in sorted(a)] == [b[s] for s in sorted(b)]
    ta, tb = final_tensors(straight), final_tensors(split)
    assert ta.keys() == tb.keys() and any(k.startswith("G_ema.") for k in ta)
    for name in ta:
        assert np.array_equal(ta[name], tb[name]), name


def test_conditional_samples_show_the_asked_class(tmp_path):
    """Trained on the MNIST test digits (10 classes), the generator draws the digit it is asked
    for: a classifier trained here on the real digits recognises the samples' classes.

    The digits are scaled to 32 px (fit=resize), as this bar was measured. Padded instead (the
    fit default since issue 13), one class lagged after 800 steps in two runs (class 3 at 0.07,
    class 5 at 0.10; the others 0.72-1.0): how padding changes class learning is being measured
    under issue 13, which this test's resize keeps apart from."""
    mnist = str(SHARED / "mnist")
    run = tmp_path / "run"
    status, _ = api.train(ImageGenerator, data=mnist, run_dir=str(run), max_steps=800, events="none",
                          settings=["g_width=32", "d_width=32", "latent_dim=64", "batch_size=64",
                                    "eval_images=64", "feature_steps=5", "fit=resize"] + CPU)
    assert status == "done"
    _, gen, _ = api.load_run(str(run), device="cpu")
    assert len(gen.classes) == 10
    real = load_images(mnist, 32, "white", api.cache_dir(), fit="resize")
    classifier, info = train_extractor(np.asarray(real.images), real.labels, 10, steps=400,
                                       device=torch.device("cpu"))
    assert info["held_out_accuracy"] > 0.9  # the judge itself can tell the digits apart
    accuracy = []
    for label, name in enumerate(gen.classes):
        samples = gen.sample(gen.SampleConfig(class_label=label), n=40, seed=100)
        assert {s.meta["class"] for s in samples} == {name}
        images = np.stack([s.data for s in samples])
        with torch.no_grad():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
            predicted = classifier(x).argmax(1).numpy()
        accuracy.append(float((predicted == label).mean()))
    # Measured after 800 steps: mean 0.95, every class 0.62-1.0; chance is 0.1. The samples of
    # one class also differ (no collapse onto one image per class).
    assert np.mean(accuracy) > 0.8 and min(accuracy) > 0.4, accuracy
    assert float(images.astype(np.float32).std(axis=0).mean()) > 10, "one image per class"


def test_mnist_fid_falls_far_below_the_untrained_generator(tmp_path):
    """A short training on the MNIST test digits (own classifier features, named in the result)."""
    settings = ["g_width=32", "d_width=32", "latent_dim=64", "batch_size=64", "eval_images=1000",
                "feature_steps=300"] + CPU
    engine, _ = api.prepare_training(ImageGenerator, data=str(SHARED / "mnist"),
                                     run_dir=str(tmp_path / "run"), max_steps=400,
                                     settings=settings, events="none")
    with EvalMode(engine):
        untrained = engine.generator.evaluate()
    assert engine.fit() == "done"
    trained = [e["metrics"] for e in engine.run.events() if e["event"] == "eval"][-1]
    assert trained["val_extractor"] == untrained["val_extractor"]
    assert trained["val_extractor"].startswith("own-classifier:")
    # Measured: FID 707 untrained, 12 after 400 steps; KID 397 -> 0.33.
    assert trained["val_fid"] < 0.2 * untrained["val_fid"], (untrained, trained)
    assert trained["val_kid"] < 0.2 * untrained["val_kid"], (untrained, trained)


def test_fid_with_inception_weights_from_a_local_file(tmp_path):
    """A safetensors file with torchvision Inception-v3 weights (random ones here: nothing is
    downloaded) is used for FID and named in the result."""
    from safetensors.torch import save_file
    from torchvision.models import inception_v3
    weights = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in inception_v3(weights=None, init_weights=False).state_dict().items()},
              str(weights))
    data = str(write_shapes_folder(tmp_path / "data"))
    status, run = api.train(ImageGenerator, data=data, run_dir=str(tmp_path / "run"), max_steps=1,
                            events="none",
                            settings=tiny_settings({"inception_weights": str(weights),
                                                    "eval_images": 10}) + CPU)
    metrics = [e["metrics"] for e in run.events() if e["event"] == "eval"][-1]
    assert metrics["val_extractor"].startswith("inception-v3:")
    assert np.isfinite(metrics["val_fid"]) and metrics["val_images"] == 10
