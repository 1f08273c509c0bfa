"""Which images each step trains on: host-side indices (BatchSchedule) and the on-device gather (real_batch).

The order depends only on (seed, epoch, position), so a resumed run replays exactly the batches it would have seen.
"""

import math

import numpy as np
from keras import ops

from facegen.model_folder import uint8_to_pixels


class BatchSchedule:
    def __init__(self, config, num_images: int):
        self.config, self.num_images = config, num_images
        self.per_step = config.batch_size * config.d_steps
        self.epoch_size = max(self.per_step, int(math.ceil(num_images * config.subset)))
        self.steps_per_epoch = max(1, self.epoch_size // self.per_step)
        self._epoch, self._order = None, None

    def total_steps(self, steps=None, epochs=None) -> int:
        """The step to train until: --steps, else --epochs converted, else 'until stopped'."""
        if steps is not None:
            return int(steps)
        if epochs is not None:
            return int(math.ceil(epochs * self.steps_per_epoch))
        return 2**62

    def indices(self, step: int):
        """(real_index int32 [d_steps, batch], cond_index int32 [d_steps + 1, batch]) for this step.

        real_index picks the real images of each D update (a permutation per epoch, a random subset if subset < 1);
        cond_index picks training rows whose attributes condition the fakes, so fakes follow the data's joint
        attribute distribution.
        """
        config = self.config
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([config.seed, epoch]).permutation(self.num_images)[:self.epoch_size]
            self._epoch = epoch
        real = self._order[position * self.per_step:(position + 1) * self.per_step]
        real = real.reshape(config.d_steps, config.batch_size).astype(np.int32)
        cond = np.random.default_rng([config.seed, epoch, position, 1]).integers(
            0, self.num_images, (config.d_steps + 1, config.batch_size), dtype=np.int32)
        return real, cond


def real_batch(images_u8, attributes, index, config, rng):
    """A batch of real images in [-1, 1] (randomly mirrored) and their attributes, gathered on the device."""
    images = uint8_to_pixels(ops.cast(ops.take(images_u8, index, axis=0), "float32"))
    if config.flip_images:
        mirror = rng.uniform((ops.shape(images)[0], 1, 1, 1)) < 0.5
        images = ops.where(mirror, ops.flip(images, axis=2), images)
    return images, ops.take(attributes, index, axis=0)
