"""/api/*: thin routes. Each parses its query with app.params, renders with app.faces, and sets cache headers."""

import hashlib
import secrets

from flask import Blueprint, current_app, jsonify, request, url_for

from app import limits
from app.errors import ApiError
from app.faces import FaceRequest, InterpolationRequest, parse_attrs, render_animation, render_grid_png
from app.params import (FACE_PARAMS, GRID_PARAMS, INTERPOLATE_PARAMS, allowed_sizes, parse_choice, parse_int,
                        parse_model, parse_psi, parse_seed, parse_seed_list, parse_size, single_values)

api = Blueprint("api", __name__, url_prefix="/api")

ANIMATION_TYPES = {"gif": "image/gif", "webp": "image/webp"}


def registry():
    return current_app.extensions["facegen"]


def query_values(params) -> dict[str, str]:
    return single_values(request.args.to_dict(flat=False), params)


def random_seed() -> int:
    return secrets.randbelow(limits.SEED_MAX + 1)


def psi_value(values) -> float:
    return parse_psi(values["psi"]) if "psi" in values else limits.DEFAULT_PSI


def image_response(body: bytes, mimetype: str, stable: bool, canonical_query: str | None = None):
    """Bytes -> response with a strong ETag (a hash of the bytes) and caching that matches the URL's stability.

    A URL that names its seed always yields these bytes, so it is cached for a year. A URL without one drew a
    random seed: caching it would freeze one random face behind that URL, so it is no-store, and the seed and the
    stable URL are given in X-Seed and Content-Location instead.
    """
    response = current_app.response_class(body, mimetype=mimetype)
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    response.headers["Cache-Control"] = limits.IMMUTABLE_CACHE_CONTROL if stable else "no-store"
    if canonical_query:
        response.headers["Content-Location"] = f"{request.path}?{canonical_query}"
    return response.make_conditional(request)


@api.get("/face")
def face():
    values = query_values(FACE_PARAMS)
    model = parse_model(values.get("model"), registry())
    seeded = "seed" in values
    seed = parse_seed(values["seed"]) if seeded else random_seed()
    size = parse_size(values.get("size"), model.resolution)
    face_request = FaceRequest(model, seed, parse_attrs(values.get("attrs"), model), psi_value(values),
                               None if size == model.resolution else size)
    # Cached PNG, else generated in a micro-batch shared with concurrent requests (app/batcher.py).
    body = current_app.extensions["facegen_renderer"].png(face_request)
    response = image_response(body, "image/png", seeded, face_request.query())
    if not seeded:
        response.headers["X-Seed"] = str(seed)
    return response


@api.get("/faces")
def faces():
    values = query_values(GRID_PARAMS)
    model = parse_model(values.get("model"), registry())
    if "seeds" in values and ("n" in values or "start" in values):
        raise ApiError("give either seeds or n (with an optional start), not both")
    stable = "seeds" in values or "start" in values
    if "seeds" in values:
        seeds = parse_seed_list(values["seeds"])
    else:
        count = parse_int(values["n"], "n", 1, limits.MAX_FACES) if "n" in values else limits.DEFAULT_FACES
        start = parse_seed(values["start"], "start") if "start" in values else random_seed()
        seeds = [(start + i) % (limits.SEED_MAX + 1) for i in range(count)]
    attrs = parse_attrs(values.get("attrs"), model)
    psi = psi_value(values)
    size = parse_size(values.get("size"), model.resolution, limits.MAX_CELL_SIZE)
    output = parse_choice(values.get("format"), "format", ["png", "json"])
    requests = [FaceRequest(model, seed, attrs, psi, None if size == model.resolution else size) for seed in seeds]
    if output == "json":
        response = jsonify({"model": model.name, "size": size,
                            "faces": [{"seed": r.seed, "url": f"{url_for('api.face')}?{r.query()}"}
                                      for r in requests]})
        response.headers["Cache-Control"] = limits.IMMUTABLE_CACHE_CONTROL if stable else "no-store"
    else:
        response = image_response(render_grid_png(requests, size), "image/png", stable)
    if not stable:
        response.headers["X-Seed"] = str(seeds[0])
    return response


@api.get("/interpolate")
def interpolate():
    values = query_values(INTERPOLATE_PARAMS)
    model = parse_model(values.get("model"), registry())
    if "from" not in values:
        raise ApiError(f"from is required: the seed of the first frame, {limits.SEED_MIN} to {limits.SEED_MAX}")
    start = parse_seed(values["from"], "from")
    end = parse_seed(values["to"], "to") if "to" in values else start
    steps = parse_int(values["steps"], "steps", limits.MIN_STEPS, limits.MAX_STEPS) if "steps" in values \
        else limits.DEFAULT_STEPS
    both = values.get("attrs")
    start_attrs = parse_attrs(values.get("from_attrs", both), model,
                              "from_attrs" if "from_attrs" in values else "attrs")
    end_attrs = parse_attrs(values.get("to_attrs", both), model, "to_attrs" if "to_attrs" in values else "attrs")
    size = parse_size(values.get("size"), model.resolution, limits.MAX_CELL_SIZE)
    output = parse_choice(values.get("format"), "format", list(ANIMATION_TYPES))
    animation = InterpolationRequest(model, start, end, start_attrs, end_attrs, steps, psi_value(values),
                                     None if size == model.resolution else size, output)
    return image_response(render_animation(animation), ANIMATION_TYPES[output], stable=True)


def describe_model(model, default: str) -> dict:
    return {"name": model.name, "default": model.name == default, "resolution": model.resolution,
            "latent_size": model.latent_size, "attributes": list(model.attributes),
            "conditional": model.conditional, "sizes": allowed_sizes(model.resolution),
            "version": model.version, "manifest": model.manifest}


@api.get("/models")
def models():
    models_registry = registry()
    response = jsonify({"default": models_registry.default,
                        "models": [describe_model(m, models_registry.default)
                                   for m in models_registry.models.values()]})
    # The set of models changes only with a restart or deploy; revalidate rather than cache blindly.
    response.headers["Cache-Control"] = "no-cache"
    return response
