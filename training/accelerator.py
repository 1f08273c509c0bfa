"""Which accelerator trains: one line for the log and run.json. (The AVX check is facegen.hardware's.)"""


def describe_accelerator() -> str:
    """One line naming the device Keras will train on. Imports Keras; call after the backend is chosen."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        kind = devices[0].platform
        names = sorted({getattr(d, "device_kind", kind) for d in devices})
        if kind == "cpu":
            return f"no GPU found: training runs on the CPU ({len(devices)} JAX device(s), backend jax)"
        return f"training on {len(devices)} {kind.upper()} device(s): {', '.join(names)} (backend jax)"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return "no GPU found: training runs on the CPU (backend tensorflow)"
        return f"training on {len(gpus)} GPU(s) (backend tensorflow)"
    return f"backend {backend}"
