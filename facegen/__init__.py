"""facegen's core: what serving (``app``) and training (``training``) share without importing each other.

- ``facegen.model_folder``: the model-folder contract (manifest keys, signatures, pixel rule, the DEFAULT file).
- ``facegen.attributes``: a query's attribute constraints and the seed rule (seed -> noise and attributes).
- ``python -m facegen`` (``__main__``): the command line; it names each command's module, serving-side ones
  included (``generate`` is app/generate.py), and imports only the one asked for.
"""

import os

# TensorFlow's oneDNN kernels on every x86 CPU. TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16
# or AMX; elsewhere (AVX2) it runs Eigen's, whose faces change with the thread count (14 of 200 faces one pixel off
# between 1 and 2 threads), so the service's bytes would hang on how its workers are sized; oneDNN's do not, and they
# generated 1.3-1.6x the faces/s on this AVX2 CPU (BENCHMARKS.md, "Batch shapes"). Set here, at the top of the
# package every entry point imports before TensorFlow loads; an operator's own value is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "1.0.0"  # the package's version: the OpenAPI document's, and generation.json's "made_by"
