"""Whether this session may use the network, and the time limit of every network call the course makes.

One place owns the answer, for the dataset loaders (:mod:`course_utils.data`) and the text encoder
(:mod:`course_utils.text`) alike:

- ``COURSE_OFFLINE=1`` (any value but ``0``) keeps the session off the network entirely;
- each host is probed once per session, for :data:`PROBE_TIMEOUT` seconds at most (:func:`is_online`);
- every call waits :data:`TIMEOUT` seconds at most to connect, and as long between two reads of an
  answer: :func:`download` for files, :func:`limit_hub` for huggingface_hub (which transformers uses).
  Name lookups are the one exception (the system's resolver bounds them); the probe that comes
  before the first call does one within its own limit;
- the first call that fails (no connection, no answer in time, a server error) takes the whole session
  offline with one printed line (:func:`go_offline`): later loaders go straight to their offline copies
  instead of trying, and waiting, again. Restart the kernel to try the network again.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OFFLINE_ENV = "COURSE_OFFLINE"
PROBE_TIMEOUT = 2.0  # seconds a probe waits for a host, name lookup included
TIMEOUT = 5.0  # seconds a network call waits to connect, and between two reads of an answer
HUB_TROUBLE = (408, 429)  # besides 5xx, the statuses with which the hub says "not now": this session goes offline


@dataclass
class _Session:
    """What this session learnt about the network: each host's probe answer, and why it went offline."""

    probes: dict[tuple[str, int], bool] = field(default_factory=dict)
    offline_because: str | None = None


_session = _Session()
_lock = threading.Lock()  # hub downloads run in threads: one of them takes the session offline and prints
_hub_limited = False  # whether limit_hub has configured huggingface_hub in this process


def offline_reason() -> str | None:
    """Why this session keeps off the network (``COURSE_OFFLINE``, or the call that failed), or None."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return f"{OFFLINE_ENV} is set"
    return _session.offline_because


def is_online(host: tuple[str, int], timeout: float = PROBE_TIMEOUT) -> bool:
    """True when ``host`` (a ``(name, port)`` pair) answers within ``timeout`` seconds and the session is online.

    Each host is probed once per session; the name lookup counts against ``timeout`` too, so a network
    that drops packets costs one wait, not one per load. After :func:`go_offline`, or with
    ``COURSE_OFFLINE`` set, the answer is False without a probe.
    """
    if offline_reason() is not None:
        return False
    if host not in _session.probes:
        _session.probes[host] = _probe(host, timeout)
    return _session.probes[host]


def _probe(host: tuple[str, int], timeout: float) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds, lookup included."""
    answers: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            answers.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)  # a hung DNS lookup cannot hold us up
    thread.start()
    thread.join(timeout)
    return bool(answers)


def go_offline(what: str, reason: str) -> None:
    """Work offline for the rest of the session because ``what`` failed; say so in one line, the first time."""
    with _lock:
        if _session.offline_because is not None:
            return
        _session.offline_because = f"{what} failed ({reason})"
    print(f"network: {what} failed ({reason}); working offline for the rest of this session")


def describe(error: BaseException, limit: int = 100) -> str:
    """``error`` in one short line: its type and message, cut at ``limit`` characters."""
    text = re.sub(r"\s+", " ", f"{type(error).__name__}: {error}").strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextmanager
def fresh_session() -> Iterator[None]:
    """Inside the block, a session that has probed nothing and is online; the current one is back after it."""
    global _session
    saved, _session = _session, _Session()
    try:
        yield
    finally:
        _session = saved


def download(url: str, path: Path) -> None:
    """Write what ``url`` serves into the file ``path``, waiting :data:`TIMEOUT` seconds at most for each answer.

    Raises:
        urllib.error.HTTPError: the server answered with an error status (it has no such file, say).
        OSError: the connection failed, stalled (``TimeoutError``) or closed before the end of the file.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "course-utils"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer, open(path, "wb") as file:
        shutil.copyfileobj(answer, file, 1 << 16)
        if answer.length:  # bytes the server announced but never sent
            raise ConnectionError(f"{url}: the connection closed {answer.length:,} bytes before the end")


def limit_hub() -> None:
    """Put every later request of huggingface_hub, and so of transformers, under the course's limits.

    Each request waits :data:`TIMEOUT` seconds at most to connect and between two reads. The first one
    that fails (no connection, no answer in time, a 5xx / 408 / 429 status) takes the session offline,
    and from then on every request fails at once with huggingface_hub's ``OfflineModeIsEnabled``, which
    huggingface_hub and transformers read as "use the local cache": no retries, no minute-long waits.
    Xet transfers are switched off (hf_xet opens its own connections, outside these limits): files come
    over plain HTTPS instead. Configures huggingface_hub once per process; later calls do nothing.
    """
    global _hub_limited
    if _hub_limited:
        return
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_XET = True
    constants.HF_HUB_ETAG_TIMEOUT = constants.HF_HUB_DOWNLOAD_TIMEOUT = TIMEOUT
    try:
        from huggingface_hub import set_client_factory
    except ImportError:  # an older huggingface_hub (requests-based): its own timeouts above are what it has
        pass
    else:
        set_client_factory(lambda: _limited_client_class()(follow_redirects=True, timeout=TIMEOUT))
    _hub_limited = True


@functools.cache
def _limited_client_class() -> type:
    """The HTTP client class of huggingface_hub under the limits of :func:`limit_hub` (defined on first use:
    only the text notebooks need it). huggingface_hub 2.x is built on ``httpx2``, 1.x (Colab's) on ``httpx``,
    whose API is the same: the class follows whichever the installed huggingface_hub uses."""
    from huggingface_hub.utils import _http

    httpx2 = getattr(_http, "httpx2", None) or _http.httpx
    from huggingface_hub import is_offline_mode
    from huggingface_hub.errors import OfflineModeIsEnabled

    def failed(request: httpx2.Request, reason: str) -> OfflineModeIsEnabled:
        go_offline(f"a request to {request.url.host}", reason)
        return OfflineModeIsEnabled(f"{request.method} {request.url} failed ({reason}); this session works offline")

    class LimitedBody(httpx2.SyncByteStream):
        """An answer's body whose failure (a stall, a dropped connection) takes the session offline."""

        def __init__(self, stream: Any, request: httpx2.Request) -> None:
            self.stream, self.request = stream, request

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self.stream
            except httpx2.TransportError as error:
                raise failed(self.request, describe(error)) from error

        def close(self) -> None:
            self.stream.close()

    class LimitedClient(httpx2.Client):
        def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
            """Send ``request`` with the course's time limits, unless this session works offline."""
            if offline_reason() is not None or is_offline_mode():
                raise OfflineModeIsEnabled(f"{request.method} {request.url}: not sent, this session works offline "
                                           f"({offline_reason() or 'HF_HUB_OFFLINE is set'})")
            request.extensions = {**request.extensions, "timeout": httpx2.Timeout(TIMEOUT).as_dict()}
            try:
                response = super().send(request, **kwargs)
            except httpx2.TransportError as error:
                raise failed(request, describe(error)) from error
            if response.status_code >= 500 or response.status_code in HUB_TROUBLE:
                response.close()
                raise failed(request, f"HTTP {response.status_code}")
            response.stream = LimitedBody(response.stream, request)
            return response

    return LimitedClient

