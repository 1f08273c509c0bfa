"""facegen training package: CelebA-layout faces -> conditional GAN -> TensorFlow SavedModel.

Run it as ``python -m training <command>``; see ``python -m training --help``.
Importing this package is cheap: Keras and TensorFlow load only inside the commands that need them.
"""

import facegen  # noqa: F401,E402  (first: it picks TensorFlow's CPU kernels before TensorFlow loads, so evaluation
#                 makes the faces the service makes; facegen/__init__.py)

__version__ = "0.1.0"
