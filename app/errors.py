"""Every error leaves the service as JSON: ``{"error": "..."}`` plus, where it helps, ``allowed``.

Validation code raises :class:`ApiError` (a plain exception, so modules that parse input need no Flask); the handlers
registered here turn it, HTTP errors (404, 405) and anything unexpected into JSON. An unexpected exception is logged
with its traceback on the server and answered with a short 500 that reveals nothing about the code.
"""

from flask import jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """A request the service refuses: the message names the problem; ``allowed`` lists valid values if useful."""

    def __init__(self, message: str, status: int = 400, allowed=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.allowed = allowed

    def body(self) -> dict:
        body = {"error": self.message}
        if self.allowed is not None:
            body["allowed"] = self.allowed
        return body


def error_response(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    # An error is about this request only; caching it would pin a transient refusal (or a since-fixed bug).
    response.headers["Cache-Control"] = "no-store"
    return response


def register_error_handlers(app) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.body(), error.status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        body = {"error": f"{error.code} {error.name}: {error.description}"}
        response = error_response(body, error.code or 500)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        # Should never happen: every bad input is an ApiError. Log the traceback here, never send it.
        app.logger.exception("unhandled exception")
        return error_response({"error": "internal error"}, 500)
