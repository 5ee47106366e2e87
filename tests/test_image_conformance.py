"""The shared conformance suite, run on the built-in image generator (a GAN)."""

import torch

from generators.image import ImageGenerator
from generators.image.model import d_loss
from image_fixtures import TINY, write_shapes_folder
from studio.testing import GeneratorConformance


class TestImageGenerator(GeneratorConformance):
    generator = ImageGenerator
    tiny_config = TINY
    sample_params = {"truncation": 1.5}

    def make_data(self, folder):
        return str(write_shapes_folder(folder))  # two classes: the conditional path runs too

    def fixed_batch_loss(self, gen, batch, ctx) -> float:
        """A GAN's training step steps both optimizers, so the measure is taken apart from it:
        the discriminator's hinge loss on the batch's real images against the generator's
        images from fixed latents, without augmentation, in eval mode (spectral norm's power
        iteration does not move) and with the global RNG left alone. Training on one batch
        teaches D to tell exactly these real images from fakes, so it falls."""
        real, labels = batch
        gan = gen.model
        was_training = gan.training
        with torch.random.fork_rng(), torch.no_grad():
            gan.eval()
            z = torch.randn(len(real), gen.config.latent_dim, generator=torch.Generator().manual_seed(0))
            fake = gan.G(z.to(real.device), labels)
            loss = d_loss(gan.D(real, labels), gan.D(fake, labels), "hinge")
        gan.train(was_training)
        return float(loss)
