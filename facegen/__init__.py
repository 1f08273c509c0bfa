"""facegen's core: what serving (``app``) and training (``training``) share without importing each other.

- ``facegen.model_folder``: the model-folder contract (manifest keys, signatures, pixel rule, seed -> inputs).
"""
