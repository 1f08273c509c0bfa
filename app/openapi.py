"""The OpenAPI 3.1 description of the service, built from the parameter declarations the validators use."""

from flask import Blueprint, jsonify

import facegen
from app import edits, limits, uploads
from app.params import EDIT_PARAMS, ENCODE_PARAMS, FACE_PARAMS, GALLERY_PARAMS, GRID_PARAMS, INTERPOLATE_PARAMS, Param

openapi = Blueprint("openapi", __name__)

ERROR = {"$ref": "#/components/responses/Error"}
NOT_MODIFIED = {"description": "Not modified: the If-None-Match ETag matches."}


def parameter(param: Param) -> dict:
    described = {"name": param.name, "in": "query", "required": bool(param.extra.get("required")),
                 "description": param.description, "schema": dict(param.schema)}
    if param.example is not None:
        described["example"] = param.example
    return described


ATTRIBUTE_HEADERS = {
    "X-Attributes": {"description": "The attributes each face used that are on, comma-separated in manifest order "
                                    "(empty: none on). One entry per face, ';' between faces: a grid's cells in "
                                    "seed order, an animation's first and last frame.",
                     "schema": {"type": "string"}, "example": "Male,Smiling;Young,No_Beard"},
    "X-Attributes-Explicit": {"description": "Every attribute of each face, '-' before the off ones: as `attrs` it "
                                             "fixes exactly the vector served, so the same seed gives the same bytes. "
                                             "';' between faces. Not on grids (see format=json).",
                              "schema": {"type": "string"}, "example": "Male,-Eyeglasses,Smiling"},
    "X-Attributes-Matched": {"description": "Models with table sampling only: `exact` when the vector is a row of "
                                            "the training set, `nearest` when no row agreed with the constraints "
                                            "(they were kept, the rest taken from the nearest rows). ';' between "
                                            "faces.",
                             "schema": {"type": "string"}, "example": "exact"},
}


def image(description: str, media_types: list[str], random_header: bool = False, explicit: bool = True) -> dict:
    headers = {"ETag": {"description": "Strong validator: a hash of the bytes.", "schema": {"type": "string"}},
               "Cache-Control": {"description": f"`{limits.IMMUTABLE_CACHE_CONTROL}` when the query names its "
                                                "seeds, `no-store` when a random seed was drawn.",
                                 "schema": {"type": "string"}}}
    headers.update({name: dict(header) for name, header in ATTRIBUTE_HEADERS.items()
                    if explicit or name != "X-Attributes-Explicit"})
    if random_header:
        headers["X-Seed"] = {"description": "The random seed drawn when the query gave none.",
                             "schema": {"type": "integer", "minimum": limits.SEED_MIN, "maximum": limits.SEED_MAX}}
    return {"description": description, "headers": headers,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types}}


def json_response(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def operation(summary: str, params, responses: dict, operation_id: str, body: dict | None = None) -> dict:
    described = {"summary": summary, "operationId": operation_id, "parameters": [parameter(p) for p in params],
                 "responses": responses}
    if body is not None:
        described["requestBody"] = body
    return described


def error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


PHOTO_BODY = {
    "required": True,
    "description": f"A portrait, JPEG, PNG (APNG: its first frame) or WebP (animated: its first frame), at most "
                   f"{uploads.MAX_UPLOAD_BYTES} bytes, {uploads.MAX_PIXELS} pixels (a JPEG "
                   f"{uploads.MAX_JPEG_PIXELS}: it is decoded reduced) and {uploads.MAX_SIDE} px a side, at least "
                   f"{uploads.MIN_SIDE} px a side; the type is judged by the bytes. Either the raw "
                   "body with its image type, or multipart/form-data with the photo in the field `image`. EXIF "
                   "orientation is applied; greyscale, palette, CMYK and 16-bit images are converted to 8-bit RGB, "
                   "transparency is composited on white. The largest face found is used. The photo is never "
                   "stored, cached or logged.",
    "content": {**{t: {"schema": {"type": "string", "format": "binary"}} for t in uploads.ALLOWED},
                "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                    "image": {"type": "string", "format": "binary"}}}}},
}
UPLOAD_ERRORS = {
    "400": error("Bad query (also: a model without an encoder, naming those with one), a corrupt or truncated "
                 "image, an image under the minimum side, a malformed multipart body or no `image` field."),
    "404": error("Unknown model."),
    "408": error(f"The body did not arrive within {uploads.UPLOAD_TIMEOUT_S:g} s."),
    "413": error("Body, pixel count or side over the limits (decompression bombs included)."),
    "415": error("Not a JPEG, PNG or WebP (GIF, BMP, TIFF, HEIC, ... named), or a Content-Type that is neither an "
                 "image type nor multipart/form-data."),
    "422": error("No face found in the photo (or the face found cannot be framed)."),
    "503": error("The encoder or the generator is busy or did not answer in time (Retry-After)."),
}
FACE_LISTING = {"type": "object", "properties": {
    "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
            "description": "x0, y0, x1, y1 of the face used, in the upright photo's pixels (top-left corner 0, 0)."},
    "landmarks": {"type": "object", "description": "left_eye, right_eye, nose, mouth_left, mouth_right: [x, y] "
                                                   "in the same coordinates (left: on the image's left)."},
    "score": {"type": "number", "description": "The detector's confidence."}}}
ENCODED = {"type": "object", "properties": {
    "model": {"type": "string"}, "version": {"type": "string"},
    "attributes": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                   "description": "Every attribute's probability as the encoder found it, in manifest order."},
    "found": {"type": "string", "description": f"The attributes as found (on where the probability is at least "
                                               f"{edits.THRESHOLD}), as an attrs value: 'Male,-Eyeglasses,...'."},
    "threshold": {"type": "number"},
    "face": FACE_LISTING,
    "faces_found": {"type": "integer", "description": "Faces the detector found; the largest is used."},
    "image": {"type": "object", "description": "The upright photo's width and height."},
    "framing": {"type": "object", "description": "size: the side of the framed face the encoder saw."}}}
EDIT_HEADERS = {
    "X-Encoded-Attributes": {"description": "Every attribute's probability as the encoder found it, manifest order, "
                                            "3 decimals.", "schema": {"type": "string"},
                             "example": "Male=0.931,Eyeglasses=0.020,Smiling=0.412"},
    "X-Attributes-Found": {"description": f"The attributes as found (probability >= {edits.THRESHOLD}), every name, "
                                          "'-' before the off ones: the rebuilt face's vector.",
                           "schema": {"type": "string"}, "example": "Male,-Eyeglasses,-Smiling"},
    "X-Attributes": {"description": "The edited face's attributes that are on.", "schema": {"type": "string"}},
    "X-Attributes-Explicit": {"description": "The edited face's vector, every name, '-' before the off ones.",
                              "schema": {"type": "string"}, "example": "Male,-Eyeglasses,Smiling"},
    "X-Faces-Found": {"description": "Faces the detector found; the largest is used.", "schema": {"type": "integer"}},
    "X-Face-Box": {"description": "x0,y0,x1,y1 of the face used, in the upright photo's pixels.",
                   "schema": {"type": "string"}},
    "Cache-Control": {"description": "Always `no-store`: an answer about someone's photo is never kept.",
                      "schema": {"type": "string"}},
}


def build_document() -> dict:
    face_list = {"type": "object", "properties": {
        "model": {"type": "string"}, "size": {"type": "integer"},
        "attribute_sampling": {"type": "string", "enum": ["table", "independent"]},
        "faces": {"type": "array", "items": {"type": "object", "properties": {
            "seed": {"type": "integer"}, "url": {"type": "string"},
            "attributes": {"type": "array", "items": {"type": "string"}, "description": "The names that are on."},
            "attrs": {"type": "string", "description": "Every attribute, '-' before the off ones (as "
                                                       "X-Attributes-Explicit)."},
            "matched": {"type": "string", "enum": ["exact", "nearest"],
                        "description": "Table sampling only."}}}}}}
    grid_ok = image("A grid PNG (format=png).", ["image/png"], random_header=True, explicit=False)
    grid_ok["content"]["application/json"] = {"schema": face_list}
    return {
        "openapi": "3.1.0",
        "info": {"title": "facegen", "version": facegen.__version__,
                 "description": "Faces from seeds and attributes. The same query always gives the same bytes."},
        "paths": {
            "/api/face": {"get": operation(
                "One face as PNG.", FACE_PARAMS,
                {"200": image("The face.", ["image/png"], random_header=True), "304": NOT_MODIFIED,
                 "400": ERROR, "404": ERROR}, "getFace")},
            "/api/faces": {"get": operation(
                f"A grid of up to {limits.MAX_FACES} faces as one PNG, or their URLs as JSON.", GRID_PARAMS,
                {"200": grid_ok, "304": NOT_MODIFIED, "400": ERROR, "404": ERROR}, "getFaces")},
            "/api/interpolate": {"get": operation(
                "An animated morph between two seeds and/or two attribute sets.", INTERPOLATE_PARAMS,
                {"200": image("The animation.", ["image/gif", "image/webp"]), "304": NOT_MODIFIED,
                 "400": ERROR, "404": ERROR}, "getInterpolation")},
            "/api/encode": {"post": operation(
                "What the encoder finds in an uploaded portrait: every attribute's probability, the face's box and "
                "landmarks. Nothing is generated.", ENCODE_PARAMS,
                {"200": {**json_response("The encoder's findings (`Cache-Control: no-store`).", ENCODED)},
                 **UPLOAD_ERRORS}, "encodePhoto", PHOTO_BODY)},
            "/api/edit": {"post": operation(
                "An uploaded portrait edited: its largest face is framed, encoded (latent and attributes) and "
                "generated again with the attributes named in attrs changed, the rest as found; by default "
                "(method=pti-photo where the model has its float signature, else method=photo) the generator's "
                "change, after the generator is tuned to this photo (pti-photo), is applied to the photo itself, and "
                "view=photo puts it back in the whole photo. The same photo and query give the same bytes. Past its "
                "deadline (FACEGEN_EDIT_DEADLINE_S), 503 with Retry-After.", EDIT_PARAMS,
                {"200": {"description": "The view asked for (PNG), or everything as JSON.", "headers": EDIT_HEADERS,
                         "content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                                     "application/json": {"schema": {"allOf": [ENCODED, {
                                         "type": "object", "properties": {
                                             "size": {"type": "integer"},
                                             "attrs": {"type": "string", "description": "The edited vector."},
                                             "method": {"type": "string", "enum": list(edits.METHODS)},
                                             "images": {"type": "object", "description": "framed, rebuilt, "
                                                        "edited and photo as data:image/png;base64 URLs."}}}]}}}},
                 **UPLOAD_ERRORS}, "editPhoto", PHOTO_BODY)},
            "/api/verify": {"post": operation(
                "The provenance marks an uploaded image carries (docs/SERVICE.md, \"Provenance marks\"): its XMP "
                "metadata (IPTC digital source type, model, seeds), its C2PA Content Credentials (present, signature "
                "valid, signer trusted) and the invisible watermark. Upload rules as for /api/edit, GIF accepted "
                "too (as multipart/form-data); nothing is stored.", (),
                {"200": json_response("The marks found (`Cache-Control: no-store`); `synthetic`: whether any says "
                                      "the image is facegen's."),
                 **{code: response for code, response in UPLOAD_ERRORS.items() if code not in ("404", "422")}},
                "verifyImage", PHOTO_BODY)},
            "/api/models": {"get": operation(
                "The models served, with their manifests and attribute_sampling: `table` (open attributes drawn "
                "as whole training rows) or `independent` (each from its frequency; models exported without a "
                "table); can_encode: whether the model takes photos (/api/encode, /api/edit); edit_methods: the "
                "/api/edit methods it offers, edit_method: the one used when the query names none (null where it "
                "cannot encode); encoders: those models' names.", (),
                {"200": json_response("Default model name and one entry per model.")}, "listModels")},
            "/healthz": {"get": operation("Liveness: the process answers.", (),
                                          {"200": json_response("Alive.")}, "healthz")},
            "/readyz": {"get": operation("Readiness: every model loaded and generated a face; models that can "
                                         "encode encoded a photo, and the face detector is built and warm.", (),
                                         {"200": json_response("Ready."), "503": ERROR}, "readyz")},
            "/openapi.json": {"get": operation("This document.", (),
                                               {"200": json_response("OpenAPI 3.1 document.")}, "openapi")},
            "/": {"get": operation(
                "The face gallery (HTML). Its query parameters preset the page's controls.", GALLERY_PARAMS,
                {"200": {"description": "HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
                "gallery")},
        },
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string", "description": "What was wrong with the request."},
                "allowed": {"type": "array", "description": "The valid values, where that helps."}}}},
            "responses": {"Error": {"description": "Bad request, unknown model, or not ready.",
                                    "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Error"}}}}},
        },
    }


@openapi.get("/openapi.json")
def openapi_json():
    response = jsonify(build_document())
    response.headers["Cache-Control"] = "no-cache"
    return response
