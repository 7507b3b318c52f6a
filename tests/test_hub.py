"""Hub references and downloads, against a local HTTP server that answers like the Hub.

The server implements what ``hf_hub_download`` uses: HEAD and GET on
``/{owner}/{repo}/resolve/{revision}/{filename}`` with ``X-Repo-Commit``, ``ETag`` and
``Content-Length``, and the Hub's ``X-Error-Code`` headers for missing repos, revisions, files
and gated repos. Nothing here reaches the real network.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from srgan_cli import hub, weights
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.hub import HubRef, looks_like_hub_ref, parse_hub_ref, resolve_weights
from srgan_cli.models import build_generator
from srgan_cli.weights import ModelEntry, save_generator

COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ----------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    "text, expected",
    [
        ("acme/srgan-weights", HubRef("acme/srgan-weights", "model.safetensors", "main")),
        ("hf://acme/x", HubRef("acme/x", "model.safetensors", "main")),
        (
            "acme/srgan-weights:srgan_x4.safetensors@v1.0",
            HubRef("acme/srgan-weights", "srgan_x4.safetensors", "v1.0"),
        ),
        ("acme/w:x4/gen.safetensors", HubRef("acme/w", "x4/gen.safetensors", "main")),
        (f"acme/w@{COMMIT}", HubRef("acme/w", "model.safetensors", COMMIT)),
        ("acme/w@refs/pr/1", HubRef("acme/w", "model.safetensors", "refs/pr/1")),
    ],
)
def test_parse_hub_ref(text, expected):
    assert looks_like_hub_ref(text)
    assert parse_hub_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "model.safetensors",
        "weights/model.safetensors",  # a folder and a file, not owner/repo
        "runs/a/model.safetensors",
        "./acme/x",
        "/abs/path",
        "acme",
        "acme/x:model.pt",  # only safetensors files are fetched
        "acme/x:../../etc/passwd.safetensors",
        "acme/x@",
        "ac--me/x",
        "acme/x/y",
        "srgan_x4",
    ],
)
def test_not_hub_refs(text):
    assert not looks_like_hub_ref(text)
    with pytest.raises(SrganError):
        parse_hub_ref(text)


def test_existing_local_path_is_not_a_hub_ref(tmp_path, monkeypatch):
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "x").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert not looks_like_hub_ref("acme/x")
    assert looks_like_hub_ref("hf://acme/x")


def test_unknown_text_lists_what_was_expected():
    with pytest.raises(SrganError) as info:
        resolve_weights("no such thing at all")
    message = str(info.value)
    assert "srgan models" in message and "owner/repo" in message and "\n" not in message


def test_missing_local_safetensors_is_no_such_file(tmp_path):
    with pytest.raises(SrganError, match="no such weights file"):
        resolve_weights(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- fake Hub


class FakeHub:
    """repos: {repo_id: {"files": {name: bytes}, "revisions": {rev: commit}, "gated": bool}}.

    ``etags`` gives a file the ETag of other bytes (a download damaged on the way: the Hub lists
    the true sha256), ``status`` answers every request of the repo with that HTTP status and no
    error code (403, 500, 503), ``cut`` sends half of each file and closes the connection. A request
    with a token not in ``tokens`` is refused as the Hub refuses one it does not know (401). GET
    ``/api/models/{repo}[/revision/{rev}]`` lists the repo's files."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.tokens: set[str] = set()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(
        self,
        repo_id: str,
        files: dict[str, bytes],
        revisions=("main",),
        gated=False,
        private=False,
        etags: dict[str, bytes] | None = None,
        status: int | None = None,
        cut: bool = False,
    ) -> None:
        revs = {rev: COMMIT for rev in revisions}
        revs[COMMIT] = COMMIT
        self.repos[repo_id] = {
            "files": dict(files),
            "revisions": revs,
            "gated": gated,
            "private": private,
            "etags": dict(etags or {}),
            "status": status,
            "cut": cut,
        }

    def gets(self) -> int:
        return sum(1 for method, _ in self.requests if method == "GET")

    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                fake.requests.append((self.command, self.path))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token and token not in fake.tokens:
                    return self._error(401, None, message="Invalid credentials in Authorization header")
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    return self._listing(parts[2:])
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, None)
                repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                from urllib.parse import unquote

                revision, filename = unquote(revision), unquote(filename)
                repo = fake.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound")
                if repo["gated"]:
                    return self._error(403, "GatedRepo")
                if repo["private"]:
                    return self._error(401, None)
                if repo["status"]:
                    return self._error(repo["status"], None)
                if revision not in repo["revisions"]:
                    return self._error(404, "RevisionNotFound")
                commit = repo["revisions"][revision]
                data = repo["files"].get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound", commit)
                listed = repo["etags"].get(filename, data)
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(listed).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data[: len(data) // 2] if repo["cut"] else data)

            def _listing(self, parts: list[str]) -> None:
                from urllib.parse import unquote

                repo = fake.repos.get(f"{parts[0]}/{parts[1]}")
                if repo is None:
                    return self._error(404, "RepoNotFound")
                revision = unquote(parts[3]) if len(parts) > 3 and parts[2] == "revision" else "main"
                if revision not in repo["revisions"]:
                    return self._error(404, "RevisionNotFound")
                info = {
                    "id": f"{parts[0]}/{parts[1]}",
                    "sha": repo["revisions"][revision],
                    "siblings": [{"rfilename": name} for name in sorted(repo["files"])],
                }
                data = json.dumps(info).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(
                self, status: int, code: str | None, commit: str | None = None, message: str | None = None
            ) -> None:
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                if code or message:
                    self.send_header("X-Error-Message", message or code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def _point_hub_at(monkeypatch, tmp_path: Path, endpoint: str) -> None:
    """Send huggingface_hub to ``endpoint`` with a cache in tmp_path and no token."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    for key, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    # huggingface_hub reads these at import time.
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)


def _set_offline(monkeypatch, offline: bool) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture()
def fake_hub(monkeypatch, tmp_path):
    fake = FakeHub()
    fake.thread.start()
    _point_hub_at(monkeypatch, tmp_path, fake.url)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture()
def tiny_weights(tmp_path) -> bytes:
    config = GeneratorConfig(num_blocks=1, num_features=8)
    path = save_generator(tmp_path / "tiny.safetensors", build_generator(config), config)
    return path.read_bytes()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ----------------------------------------------------------------------------- downloads


def test_download_then_cache_then_offline(fake_hub, tiny_weights, monkeypatch):
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})

    first = resolve_weights("acme/srgan")
    assert first.read_bytes() == tiny_weights
    assert fake_hub.gets() == 1

    second = resolve_weights("hf://acme/srgan@main")
    assert second.read_bytes() == tiny_weights
    assert fake_hub.gets() == 1, "the second run must be served from the cache"

    _set_offline(monkeypatch, True)
    before = len(fake_hub.requests)
    third = resolve_weights("acme/srgan")
    assert third.read_bytes() == tiny_weights
    assert len(fake_hub.requests) == before, "offline mode must not touch the network"


def test_offline_with_empty_cache_is_one_line(fake_hub, tiny_weights, monkeypatch):
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    _set_offline(monkeypatch, True)
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/srgan")
    message = _one_line(info)
    assert "acme/srgan" in message and "HF_HUB_OFFLINE" in message
    assert fake_hub.requests == []


def test_missing_repo_is_one_line_naming_it(fake_hub):
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/does-not-exist")
    message = _one_line(info)
    assert "acme/does-not-exist" in message and "not found" in message and "login" in message


def test_missing_file_and_revision_are_one_line(fake_hub, tiny_weights):
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights}, revisions=("main", "v1.0"))
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/srgan:other.safetensors")
    assert "other.safetensors" in _one_line(info)
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/srgan@v9")
    assert "v9" in _one_line(info) and "acme/srgan" in str(info.value)
    assert resolve_weights("acme/srgan@v1.0").read_bytes() == tiny_weights


def test_gated_repo_says_log_in(fake_hub, tiny_weights):
    fake_hub.add("acme/gated", {"model.safetensors": tiny_weights}, gated=True)
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/gated")
    message = _one_line(info)
    assert "acme/gated" in message and "gated" in message and "auth login" in message


def test_unauthorized_says_log_in(fake_hub, tiny_weights):
    fake_hub.add("acme/private", {"model.safetensors": tiny_weights}, private=True)
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/private")
    message = _one_line(info)
    assert "acme/private" in message and "auth login" in message and "HF_TOKEN" in message


def test_refused_connection_fails_fast(monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _point_hub_at(monkeypatch, tmp_path, f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/srgan")
    elapsed = time.monotonic() - start
    message = _one_line(info)
    assert "acme/srgan" in message and "retry" in message
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_named_model_downloads_and_checks_sha256(fake_hub, tiny_weights, monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path / "not-installed")
    good = hashlib.sha256(tiny_weights).hexdigest()
    entry = ModelEntry("tiny_x4", "tiny_x4.safetensors", 4, "srresnet", "test", good, "acme/tiny", "v1")
    monkeypatch.setitem(weights.MODELS, "tiny_x4", entry)
    fake_hub.add("acme/tiny", {"tiny_x4.safetensors": tiny_weights}, revisions=("v1",))

    path = resolve_weights("tiny_x4")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == good
    row = next(r for r in weights.describe_entries() if r["name"] == "tiny_x4")
    assert row["cached"] and row["available"] and row["hub"] == "acme/tiny@v1"
    model = build_generator(GeneratorConfig(num_blocks=1, num_features=8))
    assert row["params"] == sum(p.numel() for p in model.parameters())


def test_corrupted_download_is_refused_and_removed(fake_hub, tiny_weights, monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path / "not-installed")
    good = hashlib.sha256(tiny_weights).hexdigest()
    entry = ModelEntry("tiny_x4", "tiny_x4.safetensors", 4, "srresnet", "test", good, "acme/tiny", "main")
    monkeypatch.setitem(weights.MODELS, "tiny_x4", entry)
    corrupted = bytearray(tiny_weights)
    corrupted[-5] ^= 0xFF
    fake_hub.add("acme/tiny", {"tiny_x4.safetensors": bytes(corrupted)})

    with pytest.raises(SrganError) as info:
        resolve_weights("tiny_x4")
    message = _one_line(info)
    assert "acme/tiny" in message and "sha256" in message and "removed" in message
    assert hub.cached_path(HubRef("acme/tiny", "tiny_x4.safetensors", "main")) is None
    cache = Path(tmp_path / "hf_home" / "hub")
    leftovers = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size == len(corrupted)]
    assert leftovers == [], "the bad bytes must not stay in the cache"

    # Fixed on the server: the next run downloads again and succeeds.
    fake_hub.add("acme/tiny", {"tiny_x4.safetensors": tiny_weights})
    assert hashlib.sha256(resolve_weights("tiny_x4").read_bytes()).hexdigest() == good


def test_arbitrary_ref_must_load_strictly(fake_hub, tmp_path, monkeypatch):
    from safetensors.torch import save as serialize

    junk = serialize({"x": torch.zeros(3)}, metadata={"format": "something-else"})
    fake_hub.add("acme/junk", {"model.safetensors": junk})
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/junk")
    message = _one_line(info)
    assert "acme/junk" in message and "not usable srgan weights" in message and "removed" not in message
    # The shared Hugging Face cache may hold it for another tool, and offline it could not come back:
    # it stays (it was deleted, blob and all, even by a read-only 'srgan models --info').
    kept = hub.cached_path(HubRef("acme/junk"))
    assert kept is not None and kept.read_bytes() == junk
    _set_offline(monkeypatch, True)
    with pytest.raises(SrganError, match="not usable srgan weights"):
        resolve_weights("acme/junk")
    assert hub.cached_path(HubRef("acme/junk")).read_bytes() == junk


def test_a_refused_hub_file_is_named_in_full(fake_hub, tiny_weights, tmp_path):
    """The load's reason was cut at 200 characters, mid-word."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    (tmp_path / "t.safetensors").write_bytes(tiny_weights)
    with safe_open(tmp_path / "t.safetensors", "pt") as fh:
        meta = dict(fh.metadata(), format_version="99")  # from a newer srgan: a long reason
    fake_hub.add("acme/newer", {"model.safetensors": save(load_file(tmp_path / "t.safetensors"), metadata=meta)})
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/newer")
    assert _one_line(info).endswith(")") and "upgrade srgan" in _one_line(info)


def test_a_float8_hub_file_is_refused_in_one_line(fake_hub, tiny_weights, tmp_path):
    """The strict load's NotImplementedError (aminmax has no CPU kernel for float8) passed through
    _check_loads, which catches SrganError only: a traceback."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    (tmp_path / "t.safetensors").write_bytes(tiny_weights)
    with safe_open(tmp_path / "t.safetensors", "pt") as fh:
        meta = fh.metadata()
    state = {k: v.to(torch.float8_e4m3fn) for k, v in load_file(tmp_path / "t.safetensors").items()}
    fake_hub.add("acme/f8", {"model.safetensors": save(state, metadata=meta)})
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/f8")
    assert _one_line(info).startswith(
        "Hub repo 'acme/f8' (model.safetensors@main): the file is not usable srgan weights"
    )
    assert "is float8_e4m3fn; srgan reads float16, bfloat16, float32 or float64 weights)" in _one_line(info)


def test_hub_down_after_download_serves_the_cache(fake_hub, tiny_weights):
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    assert resolve_weights("acme/srgan").read_bytes() == tiny_weights
    fake_hub.server.shutdown()
    fake_hub.server.server_close()
    start = time.monotonic()
    assert resolve_weights("acme/srgan").read_bytes() == tiny_weights
    assert time.monotonic() - start < 5


def test_cli_hub_failure_is_one_error_line(fake_hub, tiny_weights, tmp_path):
    from click.testing import CliRunner

    from srgan_cli.cli import main

    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    out = tmp_path / "blend.safetensors"
    result = CliRunner().invoke(main, ["interpolate", "acme/srgan", "acme/nope", "--alpha", "0.5", "-o", str(out)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "acme/nope" in lines[0], result.output
    assert not out.exists()
    result = CliRunner().invoke(main, ["interpolate", "acme/srgan", "acme/srgan", "--alpha", "0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(weights.read_metadata(out)["interpolation"])["b"]["source"] == "acme/srgan"


def test_models_fetch_fills_the_cache_for_offline_use(fake_hub, tiny_weights, monkeypatch):
    from click.testing import CliRunner

    from srgan_cli.cli import main

    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    result = CliRunner().invoke(main, ["models", "--fetch", "acme/srgan"])
    assert result.exit_code == 0, result.output
    name, path = result.output.strip().split("\t")
    assert name == "acme/srgan" and Path(path).read_bytes() == tiny_weights
    _set_offline(monkeypatch, True)
    assert resolve_weights("acme/srgan").read_bytes() == tiny_weights
    result = CliRunner().invoke(main, ["models", "--fetch", "acme/other"])
    assert result.exit_code == 1 and "acme/other" in result.output and "HF_HUB_OFFLINE" in result.output


def test_ref_to_a_published_model_is_checked_against_the_table(fake_hub, tiny_weights, monkeypatch):
    entry = ModelEntry("tiny_x4", "tiny_x4.safetensors", 4, "srresnet", "t", "0" * 64, "acme/tiny", "v1")
    monkeypatch.setitem(weights.MODELS, "tiny_x4", entry)
    fake_hub.add("acme/tiny", {"tiny_x4.safetensors": tiny_weights}, revisions=("v1", "main"))
    with pytest.raises(SrganError, match="sha256"):
        resolve_weights("acme/tiny:tiny_x4.safetensors@v1")
    # Another revision is not the published file: it only has to load strictly.
    assert resolve_weights("acme/tiny:tiny_x4.safetensors@main").read_bytes() == tiny_weights


def test_path_objects_are_never_hub_refs(fake_hub, tiny_weights):
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    with pytest.raises(SrganError, match="no such weights file"):
        resolve_weights(Path("acme/srgan"))
    assert fake_hub.requests == []


def test_weights_folder_is_a_valid_hub_model_card_listing_every_bundled_file():
    """weights/ is uploaded as the Hub repo: its README must parse as a model card, name its
    licence properly, and list each named model's file with the sha256 the code checks."""
    from huggingface_hub import ModelCard

    folder = Path(__file__).resolve().parent.parent / "weights"
    card = ModelCard.load(folder / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "other" and meta["license_name"]
    assert (folder / meta["license_link"]).is_file()  # a file inside the repo
    assert meta["library_name"] == "srgan-cli" and meta["pipeline_tag"] == "image-to-image"
    for entry in weights.MODELS.values():
        if (folder / entry.file).is_file():
            assert entry.sha256 and hashlib.sha256((folder / entry.file).read_bytes()).hexdigest() == entry.sha256
            row = next(line for line in card.text.splitlines() if line.startswith(f"| `{entry.name}` |"))
            assert f"`{entry.file}`" in row and entry.sha256 in row, row


def test_a_model_name_longer_than_the_system_allows_is_an_unknown_model(tmp_path):
    name = "x" * 300  # os.stat raised ENAMETOOLONG: a traceback in every command that takes a model
    assert not looks_like_hub_ref(name)
    with pytest.raises(SrganError, match="unknown model"):
        resolve_weights(name)


# ----------------------------------------------------------------------------- damaged, refused, misnamed


def _flipped(data: bytes) -> bytes:
    """``data`` with one bit of a tensor's bytes flipped: the same size, and still a file that loads."""
    damaged = bytearray(data)
    damaged[-5] ^= 0x40
    return bytes(damaged)


def _cached_files_of_size(tmp_path: Path, size: int) -> list[Path]:
    return [p for p in (tmp_path / "hf_home" / "hub").rglob("*") if p.is_file() and p.stat().st_size == size]


def test_a_damaged_download_of_any_ref_is_refused_and_removed(fake_hub, tiny_weights, tmp_path):
    """The Hub lists an LFS file's sha256 (its ETag, the blob's name in the cache): a download that does
    not match it was used as it was (only a published model's file was checked), and its wrong sha256
    recorded as srgan:model_sha256."""
    good = hashlib.sha256(tiny_weights).hexdigest()
    damaged = _flipped(tiny_weights)
    fake_hub.add("acme/flip", {"model.safetensors": damaged}, etags={"model.safetensors": tiny_weights})
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/flip")
    message = _one_line(info)
    assert message.startswith("Hub repo 'acme/flip' (model.safetensors@main): the download is damaged (sha256 ")
    assert f"expected {good[:12]}..." in message and "run again to download it anew" in message
    assert hub.cached_path(HubRef("acme/flip")) is None
    assert _cached_files_of_size(tmp_path, len(damaged)) == [], "the bad bytes must not stay in the cache"

    # Fixed on the server: the next run downloads again, and the record's sha256 is the file's.
    fake_hub.add("acme/flip", {"model.safetensors": tiny_weights})
    from srgan_cli.api import load_model

    assert load_model("acme/flip", device="cpu").sha256 == good


def test_a_cached_hub_file_damaged_later_is_refused_and_downloaded_anew(fake_hub, tiny_weights):
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    path = resolve_weights("acme/srgan")
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(_flipped(tiny_weights))  # the disk's rot, or another program's write
    with pytest.raises(SrganError, match=r"the download is damaged .*; the bad copy was removed from the cache"):
        resolve_weights("acme/srgan")
    assert not blob.exists()
    assert resolve_weights("acme/srgan").read_bytes() == tiny_weights
    assert fake_hub.gets() == 2


def test_a_hub_file_is_hashed_once_for_its_check_and_its_record(fake_hub, tiny_weights, monkeypatch):
    from srgan_cli.api import load_model

    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    hashed = []
    monkeypatch.setattr(hub, "sha256_file", lambda path: hashed.append(path) or weights.sha256_file(path))
    assert load_model("acme/srgan", device="cpu").sha256 == hashlib.sha256(tiny_weights).hexdigest()
    assert len(hashed) == 1


@pytest.mark.parametrize(
    "status, said",
    [
        (
            403,
            "access denied (HTTP 403); log in with 'hf auth login' (or set HF_TOKEN) "
            "with a token that may read this repo",
        ),
        (500, "the Hub answered HTTP 500; retry later"),
        (503, "the Hub answered HTTP 503; retry later"),
    ],
)
def test_a_hub_that_answers_403_or_5xx_is_not_called_unreachable(fake_hub, tiny_weights, status, said):
    """The Hub client puts these answers under LocalEntryNotFoundError: they read "cannot reach
    the Hub; check your connection, proxy and HF_ENDPOINT"."""
    fake_hub.add("acme/answers", {"model.safetensors": tiny_weights}, status=status)
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/answers")
    message = _one_line(info)
    assert message == f"Hub repo 'acme/answers' (model.safetensors@main): {said}", message
    assert "cannot reach" not in message


def test_gated_repo_names_no_command_the_hub_client_no_longer_installs(fake_hub, tiny_weights):
    fake_hub.add("acme/gated", {"model.safetensors": tiny_weights}, gated=True)
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/gated")
    assert "huggingface-cli" not in _one_line(info) and "'hf auth login'" in _one_line(info)


def test_a_token_the_hub_refuses_is_said_to_be_refused(fake_hub, tiny_weights, monkeypatch):
    """A token in HF_TOKEN that the Hub does not know read "log in with 'hf auth login' (or set HF_TOKEN)"."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    monkeypatch.setenv("HF_TOKEN", "hf_revoked")
    fake_hub.add("acme/srgan", {"model.safetensors": tiny_weights})
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/srgan")
    message = _one_line(info)
    assert "refused the token in HF_TOKEN (HTTP 401, invalid credentials)" in message, message
    fake_hub.tokens.add("hf_revoked")
    assert resolve_weights("acme/srgan").read_bytes() == tiny_weights


def test_a_bare_ref_to_a_repo_without_model_safetensors_names_the_files_it_holds(fake_hub, tiny_weights):
    """The project's own layout has srgan_x4 and srresnet_x4, no model.safetensors: the error said
    only "name the file"."""
    fake_hub.add(
        "acme/two",
        {"srgan_x4.safetensors": tiny_weights, "srresnet_x4.safetensors": tiny_weights, "README.md": b"#"},
        revisions=("main", "v1.0"),
    )
    fake_hub.add("acme/one", {"x4/srgan_x4.safetensors": tiny_weights, "README.md": b"#"})
    fake_hub.add("acme/none", {"README.md": b"#"})
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/two@v1.0")
    assert _one_line(info) == (
        "Hub repo 'acme/two' (model.safetensors@v1.0): no file 'model.safetensors' in the repo; "
        "it holds srgan_x4.safetensors, srresnet_x4.safetensors: name one as acme/two:FILE@v1.0"
    )
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/one")
    assert _one_line(info).endswith("it holds x4/srgan_x4.safetensors: name it as acme/one:x4/srgan_x4.safetensors")
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/none")
    assert _one_line(info).endswith("it holds no .safetensors file")
    # a file that was named is not looked for under another name
    listed = sum(1 for _, path in fake_hub.requests if path.startswith("/api/"))
    with pytest.raises(SrganError) as info:
        resolve_weights("acme/two:srgan_x2.safetensors")
    assert _one_line(info).endswith(
        "no file 'srgan_x2.safetensors' in the repo; name the file as owner/repo:file.safetensors"
    )
    assert sum(1 for _, path in fake_hub.requests if path.startswith("/api/")) == listed


@pytest.mark.parametrize("prefix", ["", "hf://"])
def test_a_revision_before_the_file_is_said_in_the_right_order(fake_hub, prefix):
    """owner/repo@v1.0:file.safetensors read as a local path: "no such weights file"."""
    with pytest.raises(SrganError) as info:
        resolve_weights(f"{prefix}acme/srgan@v1.0:srgan_x4.safetensors")
    assert _one_line(info) == (
        f"{prefix}acme/srgan@v1.0:srgan_x4.safetensors: no such weights file; "
        f"a Hub reference names the file before the revision: {prefix}acme/srgan:srgan_x4.safetensors@v1.0"
    )
    assert fake_hub.requests == []


def test_a_cut_download_is_one_error_line_in_the_cli(fake_hub, tiny_weights, monkeypatch, caplog):
    """The Hub client logged "Trying to resume download..." for each try above srgan's one line;
    the library (load_model, resolve_weights) leaves the logging as it is."""
    import logging

    from click.testing import CliRunner
    from huggingface_hub import file_download

    from srgan_cli.cli import main

    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)  # the client waits 1 s a try
    client = logging.getLogger("huggingface_hub.file_download")
    monkeypatch.setattr(client, "level", logging.NOTSET)
    fake_hub.add("acme/cut", {"model.safetensors": tiny_weights}, cut=True)
    with pytest.raises(SrganError, match="download failed"):
        resolve_weights("acme/cut")
    assert client.level == logging.NOTSET
    caplog.clear()
    result = CliRunner().invoke(main, ["models", "--fetch", "acme/cut"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Hub repo 'acme/cut'"), result.output
    assert [r.getMessage() for r in caplog.records if r.name.startswith("huggingface_hub")] == []
