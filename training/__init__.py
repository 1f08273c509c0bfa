"""facegen training package: CelebA-layout faces -> conditional GAN -> TensorFlow SavedModel.

Run it as ``python -m training <command>``; see ``python -m training --help``.
Importing this package is cheap: Keras and TensorFlow load only inside the commands that need them.
"""

__version__ = "0.1.0"
