"""facegen's gunicorn worker: gthread, with the TLS handshake and the request head read in the event loop, on deadlines.

gunicorn's gthread worker hands each new connection to a request thread, which then blocks in the TLS handshake and
in reading the request line and headers, with no deadline: a few connections that send five bytes and stall hold
every thread, and ``/healthz`` stops answering. Here the worker's own event loop (the selector gthread already runs
for kept-alive connections) does that part, non-blocking, as nginx or an event-loop worker would:

- a new connection is TLS-wrapped with the context made once at start (gunicorn.conf.py), and handshakes and reads
  its request head in the loop; only a connection whose head is complete (``CRLF CRLF``, or too long, which
  gunicorn's parser then refuses) gets a request thread. A stalled connection costs a socket and a few kB, not a
  thread, so hundreds cost little (``worker_connections``, 1000 per worker, bounds them);
- the handshake and head must be done within ``FACEGEN_HEADER_TIMEOUT_S`` (10 s) of the connection's start (or, on
  a kept-alive connection, of its next request's first byte); then the connection is closed. A stopping worker
  closes such connections at once: they have no request to finish;
- while a thread serves a request, every socket read and write has a timeout (``FACEGEN_IO_TIMEOUT_S``, 30 s), so
  a client that stops reading its answer, or sends a body slower than that, frees the thread (uploads have their
  own, overall deadline: app/uploads.py);
- gunicorn's own refusals (bad request line, request line or headers too long) are answered in JSON, like the
  app's errors, instead of gunicorn's HTML page.

Why not gevent or eventlet: TensorFlow, the micro-batcher's threads and the face detector would run on greenlets
sharing one OS thread, so a 7 s grid would stop that worker's health checks; real threads release the GIL in
TensorFlow, Pillow and zlib. Why not an nginx in front: a second process and a supervisor in the image and the pod
for what fifty lines of the loop gunicorn already has do here (docs/DEPLOY.md, "What it withstands").
"""

import errno
import json
import os
import selectors
import ssl
import time
from functools import partial

from gunicorn import http, util
from gunicorn import sock as gunicorn_sock
from gunicorn.workers import gthread

HEADER_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 30.0


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    value = float(raw) if raw else default
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's util.write_error, answering JSON ``{"error": ...}`` like the app (app/errors.py)."""
    body = json.dumps({"error": f"{status_int} {reason}: {mesg}" if mesg else f"{status_int} {reason}"}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Strict-Transport-Security: max-age=31536000\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class DeadlineThreadWorker(gthread.ThreadWorker):
    """gthread whose event loop does the TLS handshake and reads the request head (see the module docstring)."""

    def init_process(self):
        self.header_timeout_s = _seconds("FACEGEN_HEADER_TIMEOUT_S", HEADER_TIMEOUT_S)
        self.io_timeout_s = _seconds("FACEGEN_IO_TIMEOUT_S", IO_TIMEOUT_S)
        # gunicorn.conf.py's ssl_context hook returns the context it made once at start: no file read per connection.
        self.tls_context = gunicorn_sock.ssl_context(self.cfg) if self.cfg.is_ssl else None
        # Past this, the head cannot be valid: hand it to gunicorn's parser, which answers 414 or 431.
        self.max_head_bytes = (self.cfg.limit_request_line + 2
                               + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2) + 2)
        self.reading_heads = {}  # connection -> deadline (time.monotonic()) for its handshake and head
        util.write_error = write_json_error  # this process only; used by Worker.handle_error
        super().init_process()

    # --- connections waiting for a complete request head, in the event loop ----------------------------------------

    def accept(self, listener):
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client, address, listener.getsockname())  # non-blocking from here
        conn.handshaken = self.tls_context is None
        if self.tls_context is not None:
            try:
                conn.sock = self.tls_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False,
                                                         suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
            except OSError:  # the client is already gone (ENOTCONN): nothing to serve
                self.nr_conns -= 1
                util.close(client)
                return
        self._read_head(conn, b"")

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request: its head is read in the loop too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_head(conn, b"")

    def finish_request(self, conn, fs):
        # Bytes read ahead past the last request (a pipelined next request) would go straight to a thread, which
        # would then block on the rest of that head: take them back to the loop instead.
        if (not fs.cancelled() and fs.exception() is None and fs.result() not in (False, None, gthread._DEFER)
                and self.alive and conn.parser is not None and conn.parser.unreader.buf.getvalue()):
            self._read_head(conn, conn.parser.unreader.take_buffered())
            return
        super().finish_request(conn, fs)

    def _read_head(self, conn, buffered: bytes):
        conn.head = bytearray(buffered)
        conn.sock.setblocking(False)
        if conn.handshaken and self._head_complete(conn.head):
            self._to_thread(conn)
            return
        self.reading_heads[conn] = time.monotonic() + self.header_timeout_s
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))

    def _head_complete(self, head: bytearray) -> bool:
        return b"\r\n\r\n" in head or b"\n\n" in head or len(head) > self.max_head_bytes

    def _on_head_readable(self, conn, _sock):
        if getattr(conn, "wants_write", False):  # the handshake could write again: back to waiting for reads
            conn.wants_write = False
            self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))
        try:
            if not conn.handshaken:
                conn.sock.do_handshake()
                conn.handshaken = True
            while not self._head_complete(conn.head):
                data = conn.sock.recv(65536)
                if not data:  # closed before a whole head: nothing to answer
                    self._drop(conn)
                    return
                conn.head += data
        except (ssl.SSLWantReadError, BlockingIOError):
            return  # more to come: wait in the loop
        except ssl.SSLWantWriteError:
            conn.wants_write = True
            self.poller.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                               partial(self._on_head_readable, conn))
            return
        except (ssl.SSLError, OSError, ValueError) as error:  # a failed handshake, a reset, a closed socket
            self.log.debug("connection dropped before its request head: %s", error)
            self._drop(conn)
            return
        self.poller.unregister(conn.sock)
        del self.reading_heads[conn]
        self._to_thread(conn)

    def _to_thread(self, conn):
        conn.sock.setblocking(True)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.initialized = True  # wrapped and parsed here: gthread's handle() goes straight to next(parser)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head = None
        self.enqueue_req(conn)

    def _drop(self, conn):
        self.reading_heads.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        util.close(conn.sock)

    def murder_pending(self):
        """Every loop turn (at least once a second): close connections past their head deadline, and all of them
        once the worker is stopping (they have no request to finish)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self.reading_heads.items()):
            if deadline <= now or not self.alive:
                self._drop(conn)

    # --- while a thread serves the request ----------------------------------------------------------------------------

    def handle_request(self, req, conn):
        # Reads of the body and writes of the answer: a stalled client frees the thread after io_timeout_s.
        conn.sock.settimeout(self.io_timeout_s)
        return super().handle_request(req, conn)
