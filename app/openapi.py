"""The OpenAPI 3.1 description of the service, built from the parameter declarations the validators use."""

from flask import Blueprint, jsonify

from app import limits
from app.params import FACE_PARAMS, GALLERY_PARAMS, GRID_PARAMS, INTERPOLATE_PARAMS, Param

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


def operation(summary: str, params, responses: dict, operation_id: str) -> dict:
    return {"summary": summary, "operationId": operation_id, "parameters": [parameter(p) for p in params],
            "responses": responses}


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
        "info": {"title": "facegen", "version": "1.0.0",
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
            "/api/models": {"get": operation(
                "The models served, with their manifests and attribute_sampling: `table` (open attributes drawn "
                "as whole training rows) or `independent` (each from its frequency; models exported without a "
                "table).", (),
                {"200": json_response("Default model name and one entry per model.")}, "listModels")},
            "/healthz": {"get": operation("Liveness: the process answers.", (),
                                          {"200": json_response("Alive.")}, "healthz")},
            "/readyz": {"get": operation("Readiness: every model loaded and generated a face.", (),
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
