"""facegen's core: what serving (``app``) and training (``training``) share without importing each other.

- ``facegen.model_folder``: the model-folder contract (manifest keys, signatures, pixel rule, the DEFAULT file).
- ``facegen.attributes``: a query's attribute constraints and the seed rule (seed -> noise and attributes).
- ``python -m facegen`` (``__main__``): the command line; it names each command's module, serving-side ones
  included (``generate`` is app/generate.py), and imports only the one asked for.
"""

__version__ = "1.0.0"  # the package's version: the OpenAPI document's, and generation.json's "made_by"
