"""The shared conformance suite, run on the built-in video generator (a GAN over clips)."""

import torch

from generators.image.model import d_loss
from generators.video import VideoGenerator
from studio.testing import GeneratorConformance
from video_fixtures import write_npy

# A config that trains in about a second a step on a busy CPU: 32 px, 4-frame clips, narrow
# networks, few clips for the scores.
TINY = {"resolution": 32, "frames": 4, "train_frames": 3, "g_width": 8, "d_width": 8,
        "content_dim": 8, "motion_dim": 4, "batch_size": 4, "eval_clips": 4, "feature_steps": 3}


class TestVideoGenerator(GeneratorConformance):
    generator = VideoGenerator
    tiny_config = TINY
    sample_params = {"truncation": 1.5, "frames": 6}

    def make_data(self, folder):
        return str(write_npy(folder / "clips.npy", "NTHWC", n=6, frames=6, size=24))

    def fixed_batch_loss(self, gen, batch, ctx) -> float:
        """A GAN's training step steps both optimizers, so the measure is taken apart from it,
        as for the image GAN: both discriminators' hinge losses on the batch's real clips
        against clips from fixed latents at the same times, without augmentation, in eval mode
        and with the global RNG left alone."""
        real, times, labels = batch
        gan = gen.model
        was_training = gan.training
        with torch.random.fork_rng(), torch.no_grad():
            gan.eval()
            fixed = torch.Generator().manual_seed(0)
            content = torch.randn(len(real), gen.config.content_dim, generator=fixed)
            noise = torch.randn(len(real), gan.G.noise_steps(gen.config.frames - 1),
                                gen.config.motion_dim, generator=fixed)
            fake = gan.G(content, noise, times, labels).view_as(real)
            frames_real, _, clips_real = gen._judge(gan, real, times, labels)
            frames_fake, _, clips_fake = gen._judge(gan, fake, times, labels)
            loss = d_loss(frames_real, frames_fake, "hinge") + d_loss(clips_real, clips_fake, "hinge")
        gan.train(was_training)
        return float(loss)
