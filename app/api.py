"""/api/*: thin routes. Each parses its query with app.params, renders with app.faces, and sets cache headers and
the attribute headers (X-Attributes, X-Attributes-Explicit, X-Attributes-Matched: the vector each face used).

POST /api/encode and /api/edit take an uploaded photo (app/uploads.py) and work through app/edits.py; their answers
are never cached (``no-store``), and the photo is read before anything could touch ``request.form``/``files``.
POST /api/verify reads an uploaded image's provenance marks the same way (app/verify_upload.py)."""

import hashlib
import secrets

from flask import Blueprint, current_app, jsonify, request, url_for

from app import admission, edits, limits, uploads
from app.errors import ApiError
from app.faces import (FaceInputs, FaceRequest, InterpolationRequest, interpolation_ends,
                       interpolation_frames, render_animation, render_grid_png)
from app.params import (EDIT_PARAMS, ENCODE_PARAMS, FACE_PARAMS, GRID_PARAMS, INTERPOLATE_PARAMS, allowed_sizes,
                        parse_attrs, parse_choice, parse_int, parse_model, parse_psi, parse_seed, parse_seed_list,
                        parse_size,
                        single_values)
from app.verify_upload import verify_upload
from facegen import attributes

api = Blueprint("api", __name__, url_prefix="/api")

ANIMATION_TYPES = {"gif": "image/gif", "webp": "image/webp"}

# The attributes each face used (docs/SERVICE.md): one entry per face, ';' between faces (a grid's cells in seed
# order, an animation's first and last frame), ',' between names.
ATTRIBUTES_HEADER = "X-Attributes"  # the names that are on
EXPLICIT_HEADER = "X-Attributes-Explicit"  # every name, '-' before the off ones: an attrs value that repeats it
MATCHED_HEADER = "X-Attributes-Matched"  # table sampling only: exact (a training row) or nearest
# Edits of an uploaded photo: what the encoder found.
ENCODED_HEADER = "X-Encoded-Attributes"  # every attribute's probability: Male=0.931,Eyeglasses=0.020,...
FOUND_HEADER = "X-Attributes-Found"  # the found vector (facegen.attributes.is_on), explicit: Male,-Eyeglasses,...
FACES_FOUND_HEADER = "X-Faces-Found"  # faces the detector found (the largest is used)
FACE_BOX_HEADER = "X-Face-Box"  # x0,y0,x1,y1 of the face used, in the upright photo's pixels


def registry():
    return current_app.extensions["facegen"]


def renderer():
    """Faces through the micro-batchers (app/batcher.py): every generator call of a route goes through them."""
    return current_app.extensions["facegen_renderer"]


def query_values(params) -> dict[str, str]:
    return single_values(request.args.to_dict(flat=False), params)


def random_seed() -> int:
    return secrets.randbelow(limits.SEED_MAX + 1)


def attrs_value(values, model, key: str = "attrs"):
    """The constraints of parameter ``key`` (None if absent); errors also say when a name is another model's."""
    return parse_attrs(values.get(key), model, key, list(registry().models.values()))


def set_attribute_headers(response, model, faces: list[FaceInputs], explicit: bool = True) -> None:
    """X-Attributes (and X-Attributes-Explicit, X-Attributes-Matched) for these faces, in order."""
    response.headers[ATTRIBUTES_HEADER] = ";".join(
        ",".join(attributes.on_names(face.attributes, model.attributes)) for face in faces)
    if explicit:
        response.headers[EXPLICIT_HEADER] = ";".join(
            attributes.explicit(face.attributes, model.attributes) for face in faces)
    if model.attribute_table is not None:
        response.headers[MATCHED_HEADER] = ";".join(face.matched for face in faces)


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
    face_request = FaceRequest.resolving(model, seed, attrs_value(values, model), psi_value(values),
                                         None if size == model.resolution else size)
    # Cached PNG, else generated in a micro-batch shared with concurrent requests (app/batcher.py).
    body = renderer().png(face_request)
    response = image_response(body, "image/png", seeded, face_request.query())
    set_attribute_headers(response, model, [face_request.resolved()])
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
    attrs = attrs_value(values, model)
    psi = psi_value(values)
    size = parse_size(values.get("size"), model.resolution, limits.MAX_CELL_SIZE)
    output = parse_choice(values.get("format"), "format", ["png", "json"])
    requests = [FaceRequest.resolving(model, seed, attrs, psi, None if size == model.resolution else size)
                for seed in seeds]
    resolved = [r.resolved() for r in requests]
    if output == "json":
        response = jsonify({"model": model.name, "size": size, "attribute_sampling": model.attribute_sampling,
                            "faces": [face_listing(r, inputs) for r, inputs in zip(requests, resolved)]})
        response.headers["Cache-Control"] = limits.IMMUTABLE_CACHE_CONTROL if stable else "no-store"
    else:
        with admission.admit_images("grid", len(requests), size):  # a large grid waits its turn, or 503
            body = render_grid_png(requests, size, renderer().faces(requests))
        response = image_response(body, "image/png", stable)
    # Every name of every cell could outgrow what proxies accept in headers (64 x 40 names): the explicit form is
    # in the JSON listing instead.
    set_attribute_headers(response, model, resolved, explicit=False)
    if not stable:
        response.headers["X-Seed"] = str(seeds[0])
    return response


def face_listing(face_request: FaceRequest, inputs: FaceInputs) -> dict:
    """One face of a JSON grid listing: its URL and the attributes it used."""
    model = face_request.model
    listed = {"seed": face_request.seed, "url": f"{url_for('api.face')}?{face_request.query()}",
              "attributes": attributes.on_names(inputs.attributes, model.attributes),
              "attrs": attributes.explicit(inputs.attributes, model.attributes)}
    if inputs.matched is not None:
        listed["matched"] = inputs.matched
    return listed


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
    # attrs sets both ends; from_attrs / to_attrs override one end each.
    start_attrs = attrs_value(values, model, "from_attrs" if "from_attrs" in values else "attrs")
    end_attrs = attrs_value(values, model, "to_attrs" if "to_attrs" in values else "attrs")
    size = parse_size(values.get("size"), model.resolution, limits.MAX_CELL_SIZE)
    output = parse_choice(values.get("format"), "format", list(ANIMATION_TYPES))
    animation = InterpolationRequest(model, start, end, start_attrs, end_attrs, steps, psi_value(values),
                                     None if size == model.resolution else size, output)
    with admission.admit_images("animation", steps, size):
        body = render_animation(animation, renderer().faces(interpolation_frames(animation)))
    response = image_response(body, ANIMATION_TYPES[output], stable=True)
    set_attribute_headers(response, model, list(interpolation_ends(animation)))
    return response


def describe_model(model, default: str) -> dict:
    return {"name": model.name, "default": model.name == default, "resolution": model.resolution,
            "latent_size": model.latent_size, "attributes": list(model.attributes),
            "conditional": model.conditional, "attribute_sampling": model.attribute_sampling,
            "attribute_rows": None if model.attribute_table is None else len(model.attribute_table),
            "can_encode": model.can_encode, "edit_methods": edits.served_methods(model),
            "edit_method": edits.default_method(model) if model.can_encode else None,
            "sizes": allowed_sizes(model.resolution), "version": model.version, "manifest": listed_manifest(model)}


def listed_manifest(model) -> dict:
    """The manifest, with its attribute table summed up: thousands of rows the gallery would download for nothing."""
    table = model.manifest.get("attribute_table")
    if table is None:
        return model.manifest
    return {**model.manifest, "attribute_table": {"distinct_rows": len(table["rows"]),
                                                  "training_rows": sum(table["counts"])}}


@api.get("/models")
def models():
    models_registry = registry()
    response = jsonify({"default": models_registry.default, "encoders": models_registry.encoders,
                        "models": [describe_model(m, models_registry.default)
                                   for m in models_registry.models.values()]})
    # The set of models changes only with a restart or deploy; revalidate rather than cache blindly.
    response.headers["Cache-Control"] = "no-cache"
    return response


# ------------------------------------------------------------------------------------ uploaded photos (POST)


def encoding_model(values):
    """The query's model, which must be able to encode photos: else 400 naming the models that can."""
    models_registry = registry()
    model = parse_model(values.get("model"), models_registry)
    if not model.can_encode:
        able = models_registry.encoders
        which = f"models that can: {', '.join(able)}" if able else "no model served here can"
        raise ApiError(f"model {model.name!r} cannot encode photos: its export has no encoder ({which}); see "
                       "can_encode in /api/models", allowed=able)
    return model


def encoded_upload(model, deadline: edits.Deadline) -> edits.EncodedPhoto:
    """The request's photo, read in memory, decoded, its largest face framed and encoded (app/edits.py)."""
    pixels = uploads.decode_image(uploads.read_upload(request))
    return edits.encode_photo(pixels, model, current_app.extensions["facegen_renderer"].encoders[model.name],
                              deadline)


def no_store(response):
    # An answer about someone's photo: never kept by a browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


@api.post("/encode")
@admission.admitted("upload")  # before the body is read, so a stalled upload holds one upload slot and no more
def encode():
    values = query_values(ENCODE_PARAMS)
    model = encoding_model(values)
    photo = encoded_upload(model, edits.Deadline())
    return no_store(jsonify(edits.encode_listing(photo)))


@api.post("/edit")
@admission.admitted("upload")
def edit():
    deadline = edits.Deadline()  # from admission on: reading the upload counts (its own timeout bounds it too)
    values = query_values(EDIT_PARAMS)
    model = encoding_model(values)
    constraints = attrs_value(values, model)
    size = parse_size(values.get("size"), model.resolution)
    output = parse_choice(values.get("format"), "format", ["png", "json"])
    if output == "json" and "view" in values:
        raise ApiError("view applies to format=png only: format=json returns every view", allowed=["png"])
    view = parse_choice(values.get("view"), "view", list(edits.VIEWS))
    method = parse_choice(values.get("method"), "method", list(edits.METHODS)) if "method" in values \
        else edits.default_method(model)
    photo = encoded_upload(model, deadline)
    edited = edits.edited_vector(photo, constraints)
    wanted = edits.JSON_VIEWS if output == "json" else edits.STRIP if view == "strip" else (view,)
    views = edits.render_views(photo, edited, wanted, size, current_app.extensions["facegen_renderer"].batchers[
        model.name], method, deadline)
    if output == "json":
        listing = edits.encode_listing(photo)
        listing.update(size=size, attrs=attributes.explicit(edited, model.attributes), method=method,
                       images={name: edits.data_url(edits.view_png(views[name], model)) for name in edits.JSON_VIEWS})
        response = jsonify(listing)
    else:
        body = edits.strip_png(views, model) if view == "strip" else edits.view_png(views[view], model)
        response = current_app.response_class(body, mimetype="image/png")
    response.headers[ATTRIBUTES_HEADER] = ",".join(attributes.on_names(edited, model.attributes))
    response.headers[EXPLICIT_HEADER] = attributes.explicit(edited, model.attributes)
    response.headers[FOUND_HEADER] = attributes.explicit(photo.found, model.attributes)
    response.headers[ENCODED_HEADER] = edits.encoded_header(photo)
    response.headers[FACES_FOUND_HEADER] = str(photo.faces_found)
    response.headers[FACE_BOX_HEADER] = ",".join(f"{v:.1f}" for v in photo.face.box)
    return no_store(response)


@api.post("/verify")
@admission.admitted("upload")  # an upload like an edit's: the same slots, limits and in-memory reading
def verify():
    """What provenance marks an uploaded image carries: metadata, credentials, watermark (app/verify_upload.py)."""
    query_values(())  # no parameters: an unknown one is a 400 naming it
    return no_store(jsonify(verify_upload(uploads.read_upload(request))))
