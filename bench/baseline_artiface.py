"""The seeds' way of serving a face, kept only as the benchmark baseline: ArtiFace's generator, predict() per request.

The generator is the seeds' DCGAN (Dense 100 -> 32x32x512, BatchNorm + LeakyReLU, reshape, Conv2DTranspose
256 (stride 2) / 128 (stride 2) / 64 (stride 1) / 3 (stride 1), 5x5, tanh: 128x128 RGB, about 58.8M parameters).
Random weights: speed does not depend on what the weights hold. Each request builds one latent vector and calls
``model.predict()`` on a batch of one, as the seeds did; the PNG is encoded with Pillow.

Served the seeds' way, by gunicorn with sync workers (bench/serve_load.py starts it), over TLS like ours:

    gunicorn -w 2 -k sync --certfile C --keyfile K -b 127.0.0.1:9443 bench.baseline_artiface:app
"""

import io
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from flask import Flask, Response, jsonify, request  # noqa: E402
from keras import layers  # noqa: E402
from PIL import Image  # noqa: E402

LATENT = 100


def build_generator() -> keras.Model:
    return keras.Sequential([
        keras.Input((LATENT,)),
        layers.Dense(32 * 32 * 512, use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Reshape((32, 32, 512)),
        layers.Conv2DTranspose(256, 5, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(128, 5, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(64, 5, strides=1, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(3, 5, strides=1, padding="same", activation="tanh"),
    ], name="artiface_generator")


_started = time.perf_counter()
generator = build_generator()
generator.predict(np.zeros((1, LATENT), np.float32), verbose=0)  # the seeds' first call, before serving
print(f"baseline worker {os.getpid()} ready: {generator.count_params():,} parameters, "
      f"{time.perf_counter() - _started:.1f} s", file=sys.stderr, flush=True)

app = Flask(__name__)


@app.get("/readyz")
def readyz():
    return jsonify({"status": "ready"})


@app.get("/api/face")
def face():
    seed = int(request.args.get("seed", "0"))
    noise = np.random.RandomState(seed).normal(0, 1, (1, LATENT)).astype(np.float32)
    image = generator.predict(noise, verbose=0)[0]
    pixels = ((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return Response(buffer.getvalue(), mimetype="image/png")
