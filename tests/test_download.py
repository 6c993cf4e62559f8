"""pnl_da.data.download against a loopback HTTP server that serves a tiny fake Office-31."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from pnl_da.data.download import download_benchmark, load_archives
from pnl_da.errors import DataError, UsageError
from tests.conftest import one_line_error

CLASSES = ("back_pack", "bike")  # labels 0 and 1, as in tllib's Office-31 lists
PER_CLASS = {"amazon": 2, "webcam": 1}
COUNTS = {f"image_list/{d}.txt": n * len(CLASSES) for d, n in PER_CLASS.items()}
NAMES = ("image_list.zip", "amazon.tgz", "webcam.tgz")


# --- a fake dataset, packed in memory ------------------------------------------------------

def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (shade % 256, 80, 160)).save(buf, format="PNG")
    return buf.getvalue()


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _domain(domain: str) -> tuple[dict[str, bytes], str]:
    """Images of one domain, and its image list in tllib's format."""
    images, lines = {}, []
    for label, cls in enumerate(CLASSES):
        for i in range(1, PER_CLASS[domain] + 1):
            path = f"{domain}/images/{cls}/frame_{i:04d}.png"
            images[path] = _png(len(images) * 37 + label)
            lines.append(f"{path} {label}\n")
    return images, "".join(lines)


@pytest.fixture(scope="module")
def packed() -> dict[str, bytes]:
    archives, lists = {}, {}
    for domain in PER_CLASS:
        images, lists[f"image_list/{domain}.txt"] = _domain(domain)
        archives[f"{domain}.tgz"] = _tgz(images)
    archives["image_list.zip"] = _zip({k: v.encode() for k, v in lists.items()})
    return archives


# --- the loopback server -------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        state = self.server.state
        data = state["files"].get(self.path)
        wanted = self.headers.get("Range")
        if data is None:
            return self._answer(404, wanted)
        start = 0
        if wanted and state["ranges"]:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                return self._answer(416, wanted)
        body = data[start:]
        self._answer(206 if start else 200, wanted)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in state["drop_once"]:  # announce everything, send half, hang up
            state["drop_once"].discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()

    def _answer(self, status: int, wanted: str | None) -> None:
        self.server.state["requests"].append((self.path, wanted, status))
        self.send_response(status)
        if status >= 400:
            self.send_header("Content-Length", "0")
            self.end_headers()


class Server:
    def __init__(self, packed: dict[str, bytes]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.state = {"files": {f"/ok/{k}": v for k, v in packed.items()},
                            "requests": [], "ranges": True, "drop_once": set()}
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def state(self) -> dict:
        return self.httpd.state

    def requests_for(self, name: str) -> list[tuple]:
        return [r for r in self.state["requests"] if r[0].endswith("/" + name)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(packed):
    srv = Server(packed)
    yield srv
    srv.close()


@pytest.fixture
def silent_url():
    """A listening socket that never accepts: connects succeed, no answer ever comes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/amazon.tgz"
    sock.close()


@pytest.fixture
def refused_url():
    """A loopback port nobody listens on (bound, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/amazon.tgz"


@pytest.fixture
def connection_timeouts(monkeypatch):
    """The timeout of every connection opened (http.client opens them through
    socket.create_connection). One opened without a timeout is given 10 s here, so that it
    fails the test's check of the timeouts instead of hanging on the silent mirror."""
    real, seen = socket.create_connection, []

    def recording(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, *args, **kwargs):
        seen.append(timeout)
        bounded = timeout if isinstance(timeout, (int, float)) else 10.0
        return real(address, bounded, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    return seen


def table(server: Server, mirrors: dict[str, list[str]] | None = None,
          counts: dict[str, int] | None = None) -> dict:
    """archives.json's shape for a fake office31; default: one mirror per archive on /ok/."""
    mirrors = mirrors or {}
    return {"office31": {
        "folder": "office31",
        "archives": [{"name": n, "urls": mirrors.get(n, [server.url(f"/ok/{n}")])}
                     for n in NAMES],
        "image_lists": dict(COUNTS if counts is None else counts),
    }}


def fetch(root, archives: dict, timeout: float = 2.0) -> list[str]:
    return download_benchmark("office31", root, timeout=timeout, log=lambda m: None,
                              archives=archives)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recorded(root) -> dict:
    return json.loads((root / "office31" / "downloads" / "sha256.json").read_text())


# --- tests ---------------------------------------------------------------------------------

def test_download_extracts_verifies_and_records_sha256(tmp_path, server, packed):
    messages = fetch(tmp_path, table(server))
    base = tmp_path / "office31"
    for domain, per_class in PER_CLASS.items():
        for cls in CLASSES:
            files = sorted((base / domain / "images" / cls).iterdir())
            assert [f.name for f in files] == [f"frame_{i:04d}.png" for i in
                                               range(1, per_class + 1)]
            with Image.open(files[0]) as image:
                assert image.size == (4, 4)
    assert (base / "image_list" / "amazon.txt").read_text().splitlines()[0] == \
        "amazon/images/back_pack/frame_0001.png 0"
    assert recorded(tmp_path) == {n: sha(packed[n]) for n in NAMES}
    downloads = base / "downloads"
    for n in NAMES:
        assert (downloads / n).read_bytes() == packed[n]
        assert (downloads / f"{n}.extracted").is_file()
        assert not (downloads / f"{n}.part").exists()
        assert len(server.requests_for(n)) == 1
    assert any("image_list/amazon.txt: 4 images, all present" in m for m in messages)
    assert messages[-1] == f"office31: ready in {base}"


def test_second_call_reuses_files_without_network(tmp_path, server):
    archives = table(server)
    fetch(tmp_path, archives)
    before = len(server.state["requests"])
    messages = fetch(tmp_path, archives)
    assert len(server.state["requests"]) == before
    assert sum("already extracted and verified, skipped" in m for m in messages) == len(NAMES)


def test_unmarked_archives_are_reextracted_from_kept_files(tmp_path, server):
    archives = table(server)
    fetch(tmp_path, archives)
    base = tmp_path / "office31"
    server.close()  # any network use now fails the call
    for marker in (base / "downloads").glob("*.extracted"):
        marker.unlink()
    lost = base / "webcam" / "images" / "bike" / "frame_0001.png"
    lost.unlink()
    messages = fetch(tmp_path, archives)
    assert lost.is_file()
    assert sum("re-using sha256 verified" in m for m in messages) == len(NAMES)


def test_interrupted_download_resumes_with_range(tmp_path, server, packed):
    server.state["drop_once"].add("/ok/amazon.tgz")
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server))
    assert "connection dropped" in one_line_error(excinfo)
    downloads = tmp_path / "office31" / "downloads"
    half = len(packed["amazon.tgz"]) // 2
    assert (downloads / "amazon.tgz.part").stat().st_size == half
    fetch(tmp_path, table(server))
    assert server.requests_for("amazon.tgz")[-1] == ("/ok/amazon.tgz", f"bytes={half}-", 206)
    assert (downloads / "amazon.tgz").read_bytes() == packed["amazon.tgz"]
    assert not (downloads / "amazon.tgz.part").exists()
    assert recorded(tmp_path)["amazon.tgz"] == sha(packed["amazon.tgz"])


def test_resume_starts_over_when_server_ignores_range(tmp_path, server, packed):
    server.state["ranges"] = False
    server.state["drop_once"].add("/ok/amazon.tgz")
    with pytest.raises(DataError):
        fetch(tmp_path, table(server))
    fetch(tmp_path, table(server))
    half = len(packed["amazon.tgz"]) // 2
    assert server.requests_for("amazon.tgz")[-1] == ("/ok/amazon.tgz", f"bytes={half}-", 200)
    downloads = tmp_path / "office31" / "downloads"
    assert (downloads / "amazon.tgz").read_bytes() == packed["amazon.tgz"]


def test_truncated_archive_is_refused_and_removed(tmp_path, server, packed):
    server.state["files"]["/ok/amazon.tgz"] = packed["amazon.tgz"][: len(packed["amazon.tgz"])
                                                                     // 2]
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server))
    message = one_line_error(excinfo)
    downloads = tmp_path / "office31" / "downloads"
    assert f"{downloads / 'amazon.tgz'} is truncated or corrupt" in message
    assert not (downloads / "amazon.tgz").exists()
    assert "amazon.tgz" not in recorded(tmp_path)
    assert "image_list.zip" in recorded(tmp_path)
    assert not list(downloads.glob("*.extracted"))


def test_404_mirror_falls_through_to_next(tmp_path, server):
    mirrors = {n: [server.url(f"/gone/{n}"), server.url(f"/ok/{n}")] for n in NAMES}
    messages = fetch(tmp_path, table(server, mirrors))
    for n in NAMES:
        assert [r[2] for r in server.requests_for(n)] == [404, 200]
    assert any(f"mirror failed: {server.url('/gone/amazon.tgz')} (HTTP 404)" in m
               for m in messages)


def test_silent_mirror_times_out_and_next_is_used(tmp_path, server, silent_url, packed,
                                                   connection_timeouts):
    mirrors = {"amazon.tgz": [silent_url, server.url("/ok/amazon.tgz")]}
    messages = fetch(tmp_path, table(server, mirrors), timeout=1.0)
    # every connection, the silent one included, is opened with the timeout asked for
    assert connection_timeouts and set(connection_timeouts) == {1.0}
    assert any(f"mirror failed: {silent_url} (no answer within 1 s)" in m for m in messages)
    assert server.requests_for("amazon.tgz") == [("/ok/amazon.tgz", None, 200)]
    assert (tmp_path / "office31" / "downloads" / "amazon.tgz").read_bytes() == \
        packed["amazon.tgz"]


def test_all_mirrors_failing_gives_one_line_error(tmp_path, server, silent_url, refused_url,
                                                  connection_timeouts):
    mirrors = {"amazon.tgz": [server.url("/gone/amazon.tgz"), refused_url, silent_url]}
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server, mirrors), timeout=1.0)
    assert connection_timeouts and set(connection_timeouts) == {1.0}
    message = one_line_error(excinfo)
    assert excinfo.value.exit_code == 3
    target = tmp_path / "office31" / "downloads" / "amazon.tgz"
    assert message.startswith("could not download office31 archive amazon.tgz: every mirror "
                              "failed:")
    for reason in ("(HTTP 404)", "(connection refused)", "(no answer within 1 s)"):
        assert reason in message
    assert f"download it by hand to {target} and run `pnl-da download office31" in message


def test_manually_placed_archives_are_used(tmp_path, server, packed):
    downloads = tmp_path / "office31" / "downloads"
    downloads.mkdir(parents=True)
    for n in NAMES:
        (downloads / n).write_bytes(packed[n])
    mirrors = {n: [server.url(f"/gone/{n}")] for n in NAMES}
    fetch(tmp_path, table(server, mirrors))
    assert server.state["requests"] == []
    assert recorded(tmp_path) == {n: sha(packed[n]) for n in NAMES}
    assert (tmp_path / "office31" / "amazon" / "images" / "bike" / "frame_0002.png").is_file()


def test_corrupted_reused_archive_is_detected(tmp_path, server):
    archives = table(server)
    fetch(tmp_path, archives)
    downloads = tmp_path / "office31" / "downloads"
    for marker in downloads.glob("*.extracted"):
        marker.unlink()
    path = downloads / "amazon.tgz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, archives)
    message = one_line_error(excinfo)
    assert f"{path} does not match the sha256 recorded" in message
    assert "pnl-da download office31" in message
    assert not path.exists()


def test_wrong_image_count_is_detected(tmp_path, server):
    counts = dict(COUNTS, **{"image_list/amazon.txt": 5})
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server, counts=counts))
    message = one_line_error(excinfo)
    list_path = tmp_path / "office31" / "image_list" / "amazon.txt"
    assert f"image list {list_path} names 4 images, expected 5" in message
    assert not list((tmp_path / "office31" / "downloads").glob("*.extracted"))


def test_missing_listed_file_is_detected(tmp_path, server, packed):
    images, listing = _domain("amazon")
    listing += "amazon/images/bike/frame_0099.png 1\n"
    _, webcam_list = _domain("webcam")
    server.state["files"]["/ok/image_list.zip"] = _zip({
        "image_list/amazon.txt": listing.encode(), "image_list/webcam.txt": webcam_list.encode()})
    counts = dict(COUNTS, **{"image_list/amazon.txt": 5})
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server, counts=counts))
    message = one_line_error(excinfo)
    assert "1 of 5 images listed in" in message and "frame_0099.png" in message


def test_tar_with_parent_member_is_refused(tmp_path, server):
    server.state["files"]["/ok/amazon.tgz"] = _tgz({"amazon/images/bike/a.png": _png(1),
                                                    "../evil": b"owned"})
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server))
    message = one_line_error(excinfo)
    assert "member '../evil' would be written outside" in message
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "office31" / "downloads" / "amazon.tgz").exists()


def test_zip_with_absolute_member_is_refused(tmp_path, server):
    server.state["files"]["/ok/image_list.zip"] = _zip({"/etc/evil.txt": b"x"})
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, table(server))
    assert "member '/etc/evil.txt'" in one_line_error(excinfo)
    assert not (tmp_path / "office31" / "downloads" / "image_list.zip").exists()


def test_unknown_benchmark_is_a_usage_error(tmp_path, server):
    with pytest.raises(UsageError, match="choose one of: office31"):
        download_benchmark("office99", tmp_path, log=lambda m: None, archives=table(server))


def test_shipped_archives_json_holds_the_documented_facts():
    archives = load_archives()
    assert {k: v["folder"] for k, v in archives.items()} == {
        "office31": "office31", "officehome": "office-home", "visda2017": "visda-2017"}
    assert archives["office31"]["image_lists"] == {
        "image_list/amazon.txt": 2817, "image_list/dslr.txt": 498, "image_list/webcam.txt": 795}
    assert archives["officehome"]["image_lists"] == {
        "image_list/Art.txt": 2427, "image_list/Clipart.txt": 4365,
        "image_list/Product.txt": 4439, "image_list/Real_World.txt": 4357}
    assert archives["visda2017"]["image_lists"] == {
        "image_list/train.txt": 152397, "image_list/validation.txt": 55388}
    urls = {a["name"]: a["urls"] for a in archives["office31"]["archives"]}
    assert urls["amazon.tgz"] == ["https://cloud.tsinghua.edu.cn/f/ec12dfcddade43ab8101/?dl=1"]
    visda = {a["name"]: a["urls"] for a in archives["visda2017"]["archives"]}
    assert visda["train.tgz"][1] == "http://csr.bu.edu/ftp/visda17/clf/train.tar"
    assert visda["validation.tgz"][1] == "http://csr.bu.edu/ftp/visda17/clf/validation.tar"
    for benchmark in archives.values():
        for archive in benchmark["archives"]:
            assert re.fullmatch(r"https://cloud\.tsinghua\.edu\.cn/f/[0-9a-f]{20}/\?dl=1",
                                archive["urls"][0])
