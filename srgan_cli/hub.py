"""Where weights come from: a named model, a local file, or a Hugging Face Hub reference.

Hub reference grammar (what ``looks_like_hub_ref`` accepts and ``parse_hub_ref`` splits)::

    [hf://]OWNER/REPO[:FILENAME][@REVISION]

* ``OWNER`` and ``REPO``: letters, digits, ``-``, ``_`` and ``.``; start with a letter or digit;
  at most 96 characters; no ``--`` or ``..``. ``REPO`` must not end in a file suffix such as
  ``.safetensors`` or ``.pt`` (``weights/model.safetensors`` is a local path, not a repo).
* ``FILENAME``: the file inside the repo, which may be in a folder (``x4/model.safetensors``)
  and must end in ``.safetensors``. Default: ``model.safetensors`` (the Hub convention; a
  fixed default needs no listing call, so it also works offline from the cache). Where the repo
  has no such file, the error names the ``.safetensors`` files it holds.
* ``REVISION``: a branch, tag or commit hash (letters, digits, ``.``, ``_``, ``-``, ``/``).
  Default: ``main``. Pin a tag or commit for reproducible results.

A text that names an existing local file or folder is never a Hub reference; ``hf://`` forces
the Hub reading. Downloads go through ``huggingface_hub.hf_hub_download``, so its cache
(``HF_HOME``/``HF_HUB_CACHE``), ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and tokens
(``hf auth login``, ``HF_TOKEN``) all apply.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import EMPTY_MODEL, OptionError, SrganError, first_line
from .weights import (
    MODELS,
    PICKLE_SUFFIXES,
    ModelEntry,
    check_weights_file,
    file_identity,
    load_generator,
    sha256_file,
    unreadable,
)

DEFAULT_FILENAME = "model.safetensors"
DEFAULT_REVISION = "main"
# Seconds srgan waits for one answer of the Hub: past it, a cached copy is used, or the error says
# the Hub cannot be reached (a stalled proxy or a captive portal accepts the connection and never answers).
HUB_TIMEOUT = 10.0

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?|[A-Za-z0-9]"
_HUB_RE = re.compile(
    rf"^(?P<owner>{_NAME})/(?P<repo>{_NAME})"
    r"(?::(?P<filename>[A-Za-z0-9._-][A-Za-z0-9._/-]*\.safetensors))?"
    r"(?:@(?P<revision>[A-Za-z0-9._-][A-Za-z0-9._/-]*))?$"
)
_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".png", ".jpg", ".jpeg", ".json", ".onnx", ".h5")


@dataclass(frozen=True)
class HubRef:
    """One file of one revision of a Hub model repo."""

    repo_id: str
    filename: str = DEFAULT_FILENAME
    revision: str = DEFAULT_REVISION

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.filename}@{self.revision}"


def _match(text: str) -> re.Match[str] | None:
    body = text[len("hf://") :] if text.startswith("hf://") else text
    match = _HUB_RE.match(body)
    if match is None:
        return None
    for part in (match["owner"], match["repo"]):
        if "--" in part or ".." in part:
            return None
    if match["repo"].lower().endswith(_FILE_SUFFIXES):
        return None
    for part in (match["filename"] or "", match["revision"] or ""):
        if ".." in part.split("/") or "//" in part or part.endswith("/"):
            return None
    return match


def _swapped_order(text: str) -> str | None:
    """``owner/repo:file@rev`` for ``owner/repo@rev:file`` (the revision before the file, which
    read as a local path that does not exist), or None."""
    prefix = "hf://" if text.startswith("hf://") else ""
    head, at, tail = text[len(prefix) :].partition("@")
    revision, colon, filename = tail.rpartition(":")
    if not at or not colon or ":" in head:
        return None
    fixed = f"{prefix}{head}:{filename}@{revision}"
    return fixed if _match(fixed) is not None and _match(text) is None else None


def looks_like_hub_ref(text: str) -> bool:
    """True for ``[hf://]owner/repo[:file.safetensors][@revision]`` that is not an existing local path."""
    text = str(text)
    # os.path.expanduser leaves "~nouser/x" as it is; pathlib's raised RuntimeError (a traceback);
    # os.path.lexists is False, not an OSError, for a name longer than the system allows
    if not text.startswith("hf://") and (os.path.exists(os.path.expanduser(text)) or "\\" in text):
        return False
    return _match(text) is not None


def is_repo_id(text: str) -> bool:
    """True for a Hub repo id, ``owner/name`` (or a bare ``name``), by the names' rules above: no
    file, revision, ``hf://`` or URL (whose text the Hub client took as a name and failed on, a failure
    that read as a network problem)."""
    match = re.fullmatch(rf"(?:(?P<owner>{_NAME})/)?(?P<name>{_NAME})", str(text))
    return match is not None and not any("--" in part or ".." in part for part in match.groups() if part)


def parse_hub_ref(text: str) -> HubRef:
    """Split a Hub reference; a one-line SrganError says the grammar if it is not one."""
    match = _match(str(text))
    if match is None:
        raise SrganError(
            f"{text!r} is not a Hub reference; expected owner/repo[:file.safetensors][@revision], "
            "e.g. acme/srgan-weights:srgan_x4.safetensors@v1.0"
        )
    return HubRef(
        repo_id=f"{match['owner']}/{match['repo']}",
        filename=match["filename"] or DEFAULT_FILENAME,
        revision=match["revision"] or DEFAULT_REVISION,
    )


def resolve_weights(name_or_path: str | Path) -> Path:
    """The local safetensors file for a model name, a local path, or a Hub reference.

    1. A name from ``MODELS``: the bundled file (its sha256 checked when the table has one),
       else a download from the entry's Hub repo and revision, else an error. Never random weights.
    2. An existing local file, which must be a regular file this process may read (pickle formats
       refused: they are never loaded). A ``Path`` object is always a local path, never a Hub reference.
    3. A Hub reference: downloaded (or taken from the Hugging Face cache) and checked: against the
       table's sha256 when it is where a named model is published, else by a strict load.
    4. Otherwise a one-line error that says what was expected.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and not text.strip():  # Path('') is '.': "a folder", said every command
        raise OptionError(EMPTY_MODEL)
    if isinstance(name_or_path, str) and text in MODELS:
        return _resolve_named(MODELS[text])
    path = Path(os.path.expanduser(text))  # not Path.expanduser: it raises for a user who does not exist
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if path.name == "checkpoint.pt" and (path.parent / "generator.safetensors").is_file():
            raise SrganError(
                f"{path}: a training checkpoint, not weights; use {path.parent / 'generator.safetensors'} "
                "(or generator_best.safetensors) beside it"
            )
        raise SrganError(
            f"{path}: pickle checkpoints ({path.suffix}) are never loaded, they can run code; "
            "convert to safetensors (load it yourself only if you trust it, then save with save_generator)"
        )
    try:
        mode: int | None = os.stat(path).st_mode
    except PermissionError as exc:  # a folder on the way may not be searched: a local path all the same
        raise unreadable(path, exc) from None
    except (OSError, ValueError):
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        run_weights = Path(path) / "generator.safetensors"
        if run_weights.is_file():  # `srgan train --out runs/a`, then -m runs/a
            raise SrganError(f"{path}: is a folder; give the weights file in it: {run_weights}")
        raise SrganError(f"{path}: is a folder; give a .safetensors weights file, a model name or a Hub reference")
    if mode is not None:
        # A FIFO, socket or device is named as such (not "no such weights file"), and never
        # opened to read; a file this process may not read is refused here, before any command
        # hashes it (a PermissionError traceback).
        check_weights_file(path)
        return path
    swapped = None if isinstance(name_or_path, Path) else _swapped_order(text)
    if swapped is not None:
        raise SrganError(f"{text}: no such weights file; a Hub reference names the file before the revision: {swapped}")
    if isinstance(name_or_path, Path) or (
        not text.startswith("hf://") and path.suffix.lower() == ".safetensors" and _match(text) is None
    ):
        raise SrganError(f"{path}: no such weights file")
    if looks_like_hub_ref(text):
        ref = parse_hub_ref(text)
        known = _published_sha256(ref)
        local = download(ref, sha256=known)
        if known is None:
            _check_loads(local, ref)
        return local
    names = ", ".join(MODELS)
    raise SrganError(
        f"unknown model {text!r}: expected a model name ({names}; 'srgan models' lists them), "
        "a .safetensors file, or a Hub reference owner/repo[:file.safetensors][@revision]"
    )


def weights_sha256(name_or_path: str | Path, path: Path) -> str:
    """The sha256 of ``path``, the file ``resolve_weights(name_or_path)`` returned: for a named
    model with a published sha256 that resolve already checked the file against, the table's
    value, and for a Hub file the hash ``download`` checked it with (while the file is that
    version), so the file is not hashed a second time."""
    entry = MODELS.get(name_or_path) if isinstance(name_or_path, str) else None
    if entry is not None and entry.sha256:
        return entry.sha256
    identity = file_identity(path)
    return (_HASHED.get(identity) if identity is not None else None) or _sha256(path)


def _sha256(path: Path) -> str:
    """``sha256_file``, with a file that cannot be read (permissions, I/O) as one SrganError line."""
    try:
        return sha256_file(path)
    except OSError as exc:
        raise unreadable(path, exc) from None


def _resolve_named(entry: ModelEntry) -> Path:
    bundled = entry.bundled_path()
    if bundled is not None:
        if entry.sha256 and _sha256(bundled) != entry.sha256:
            raise SrganError(
                f"{bundled}: bundled weights of '{entry.name}' do not match their published sha256; "
                "the install is damaged, reinstall srgan-cli"
            )
        return bundled
    if entry.hub_repo:
        ref = HubRef(entry.hub_repo, entry.file, entry.hub_revision or DEFAULT_REVISION)
        local = download(ref, sha256=entry.sha256)
        if not entry.sha256:
            _check_loads(local, ref)
        return local
    raise SrganError(
        f"model '{entry.name}' is not bundled in this install and has no hub source yet; "
        "train one with 'srgan train' or pass a .safetensors file or Hub reference"
    )


def _published_sha256(ref: HubRef) -> str | None:
    """The table's sha256 when ``ref`` is exactly where a named model is published."""
    for entry in MODELS.values():
        if (
            entry.sha256
            and entry.hub_repo == ref.repo_id
            and entry.file == ref.filename
            and (entry.hub_revision or DEFAULT_REVISION) == ref.revision
        ):
            return entry.sha256
    return None


def cached_path(ref: HubRef) -> Path | None:
    """The file in the Hugging Face cache for ``ref``, or None; never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    found = try_to_load_from_cache(ref.repo_id, ref.filename, revision=ref.revision)
    return Path(found) if isinstance(found, str) else None


def download(ref: HubRef, sha256: str | None = None) -> Path:
    """Fetch ``ref`` with ``hf_hub_download`` (cache first as the Hub client decides).

    Every failure is one SrganError line naming the repo and what to do. A file whose content
    does not match the sha256 it is known by is removed from the cache and refused: ``sha256``
    where given (a published model), and for every file the Hub stores in LFS the sha256 the Hub
    lists for it, which names its blob in the cache (the Hub client checks only the size: a
    damaged download, or a cached copy damaged later, was used as it was).
    """
    try:
        import huggingface_hub
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise SrganError(f"{ref.repo_id}: downloading needs huggingface_hub; pip install huggingface_hub") from None

    where = f"Hub repo '{ref.repo_id}' ({ref.filename}@{ref.revision})"
    try:
        with _short_retries():
            local = Path(
                huggingface_hub.hf_hub_download(
                    repo_id=ref.repo_id, filename=ref.filename, revision=ref.revision, etag_timeout=HUB_TIMEOUT
                )
            )
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:  # gated ones too
        raise _refusal(where, exc, ref.revision) from None
    except hf_errors.RemoteEntryNotFoundError:
        raise SrganError(f"{where}: no file '{ref.filename}' in the repo; {_name_the_file(ref)}") from None
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as exc:
        if _offline():
            raise SrganError(
                f"{where}: not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "unset HF_HUB_OFFLINE (or run once online) to download it"
            ) from None
        # The Hub client puts an answer it did not expect (403, 5xx) under "cannot find the
        # requested files": the answer is said as it was, not as a network problem.
        answer = _http_error_in(exc)
        if answer is not None:
            raise _http_failure(where, answer) from None
        raise SrganError(
            f"{where}: cannot reach the Hub ({_endpoint()}) and the file is not cached; "
            "check your connection, proxy and HF_ENDPOINT, then retry"
        ) from None
    except hf_errors.HfHubHTTPError as exc:
        raise _http_failure(where, exc) from None
    except (OSError, ValueError) as exc:
        raise SrganError(f"{where}: download failed ({_first_line(exc)}); retry") from None
    except Exception as exc:  # httpx errors and other network failures of the client
        raise SrganError(f"{where}: download failed ({type(exc).__name__}: {_first_line(exc)}); retry") from None
    got = _hub_file_sha256(local)
    listed = local.resolve().name  # an LFS file's blob is named by the sha256 the Hub lists for it
    if _SHA256_RE.fullmatch(listed) and got != listed:
        raise SrganError(
            f"{where}: the download is damaged (sha256 {got[:12]}..., expected {listed[:12]}...); "
            + _removed_or_not(local, "run again to download it anew")
        )
    if sha256 is not None and got != sha256:
        raise SrganError(
            f"{where}: downloaded file has sha256 {got[:12]}..., expected {sha256[:12]}...; "
            + _removed_or_not(local, "retry, and report it if it happens again")
        )
    return local


_SHA256_RE = re.compile(r"[0-9a-f]{64}")

# The sha256 of Hub files download() hashed in this process, by file_identity: weights_sha256 gives
# it again for the record (srgan:model_sha256) instead of reading the file a second time.
_HASHED: dict[tuple[int, ...], str] = {}


def _hub_file_sha256(local: Path) -> str:
    before = file_identity(local)
    got = _sha256(local)
    if before is not None and file_identity(local) == before:
        if len(_HASHED) >= 64:
            _HASHED.clear()
        _HASHED[before] = got
    return got


def _removed_or_not(local: Path, then: str) -> str:
    """Remove the damaged cached ``local`` and say so, with what to do ``then``; or, where it
    cannot be removed (a read-only cache), say which file to delete."""
    blob = local.resolve()
    _remove_cached(local)
    if os.path.lexists(blob):
        return f"delete {blob} from the Hugging Face cache (srgan could not), then {then}"
    return f"the bad copy was removed from the cache; {then}"


def _http_error_in(exc: BaseException) -> BaseException | None:
    """The Hub's HTTP answer (an HfHubHTTPError with a status) behind ``exc``, if one is."""
    from huggingface_hub import errors as hf_errors

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, hf_errors.HfHubHTTPError) and _status(cause) is not None:
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _http_failure(where: str, exc: BaseException) -> SrganError:
    """The one-line error for an HTTP answer of the Hub that is not the file."""
    status = _status(exc)
    if status in (401, 403):
        return _refusal(where, exc)
    if status is None or status >= 500 or status in (408, 429):
        return SrganError(f"{where}: the Hub answered HTTP {status}; retry later")
    return SrganError(f"{where}: the Hub answered HTTP {status}; check the reference and HF_ENDPOINT")


def _name_the_file(ref: HubRef) -> str:
    """What to do about a file the repo lacks: for the default name (a bare ``owner/repo``), the
    ``.safetensors`` files the repo holds, asked of the Hub with a time limit; else (or where the
    Hub does not say) how to name one."""
    usage = "name the file as owner/repo:file.safetensors"
    if ref.filename != DEFAULT_FILENAME or _offline():
        return usage
    try:
        import huggingface_hub

        with _short_retries():
            info = huggingface_hub.HfApi().repo_info(ref.repo_id, revision=ref.revision, timeout=HUB_TIMEOUT)
        names = sorted(s.rfilename for s in (info.siblings or []) if s.rfilename.endswith(".safetensors"))
    except Exception:  # noqa: BLE001 - the listing is a hint: without it, the usage
        return usage
    at = "" if ref.revision == DEFAULT_REVISION else f"@{ref.revision}"
    if not names:
        return "it holds no .safetensors file"
    if len(names) == 1:
        return f"it holds {names[0]}: name it as {ref.repo_id}:{names[0]}{at}"
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"it holds {shown}: name one as {ref.repo_id}:FILE{at}"


def download_folder(repo_id: str, folder: str, repo_type: str = "dataset") -> tuple[Path, str | None]:
    """The local snapshot of ``repo_id`` that holds ``folder/`` (only its files are fetched), and why the
    Hub was not asked: None where it answered, else a clause ("HF_HUB_OFFLINE is set", "the Hub cannot
    be reached (no answer within 10 s)") for a message; the cached copy is then used as it is, and
    may lack ``folder/``.

    ``snapshot_download`` asks the Hub for the repo's revision with no time limit: an endpoint that
    accepts the connection and never answers (a stalled proxy, a captive portal) hung for good, the
    folder cached or not. The Hub is first asked once with :data:`HUB_TIMEOUT`, as ``download`` waits
    for a model file; where that fails, the cached copy is used or the error says what to do, in
    one line, as ``download``'s do.
    """
    try:
        import huggingface_hub
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise SrganError(f"{repo_id}: downloading needs huggingface_hub; pip install huggingface_hub") from None

    where = f"Hub {'dataset' if repo_type == 'dataset' else 'repo'} '{repo_id}'"
    patterns = [f"{folder}/*", f"{folder}/**"]

    def cached(why: str) -> tuple[Path, str]:
        try:
            root = huggingface_hub.snapshot_download(
                repo_id=repo_id, repo_type=repo_type, allow_patterns=patterns, local_files_only=True
            )
        except Exception:  # noqa: BLE001 - not in the cache (or not whole there): nothing to use
            if _offline():
                raise SrganError(
                    f"{where}: {folder}/ is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                    "unset HF_HUB_OFFLINE (or run once online) to download it"
                ) from None
            raise SrganError(
                f"{where}: {why} and {folder}/ is not in the Hugging Face cache; "
                "check your connection, proxy and HF_ENDPOINT, then retry"
            ) from None
        return Path(root), why

    if _offline():
        return cached("HF_HUB_OFFLINE is set")
    try:
        with _short_retries():
            info = huggingface_hub.HfApi().repo_info(repo_id, repo_type=repo_type, timeout=HUB_TIMEOUT)
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:
        raise _refusal(where, exc) from None
    except Exception as exc:  # noqa: BLE001 - no answer, a refused connection, a proxy's or captive portal's page
        if isinstance(exc, hf_errors.HfHubHTTPError) and _status(exc) in (401, 403):
            raise _refusal(where, exc) from None
        return cached(f"the Hub cannot be reached ({_endpoint()}: {_why(exc)})")
    try:
        with _short_retries():
            root = _download_files(repo_id, repo_type, folder, info, patterns)
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as exc:
        raise _refusal(where, exc) from None
    except Exception as exc:  # noqa: BLE001 - network, disk and cache errors of the client
        if isinstance(exc, hf_errors.HfHubHTTPError) and _status(exc) in (401, 403):
            raise _refusal(where, exc) from None
        raise SrganError(f"{where}: download of {folder}/ failed ({_why(exc)}); retry") from None
    return Path(root), None


def _download_files(repo_id: str, repo_type: str, folder: str, info, patterns: list[str]) -> str:
    """The snapshot folder holding ``folder/`` of the revision ``info`` (``repo_info``'s answer) names, its
    files fetched each with :data:`HUB_TIMEOUT` for the Hub's answer: ``snapshot_download`` asked the Hub
    for the revision again, with no time limit, and an endpoint that answered once and stalled after hung
    for good. Where the answer lists no files, ``snapshot_download`` of that very revision."""
    import concurrent.futures

    import huggingface_hub

    names = [s.rfilename for s in (getattr(info, "siblings", None) or []) if s.rfilename.startswith(folder + "/")]
    revision = getattr(info, "sha", None)
    if not names or not revision:
        return huggingface_hub.snapshot_download(
            repo_id=repo_id, repo_type=repo_type, allow_patterns=patterns, etag_timeout=HUB_TIMEOUT, revision=revision
        )

    def fetch(name: str) -> str:
        return huggingface_hub.hf_hub_download(
            repo_id, name, repo_type=repo_type, revision=revision, etag_timeout=HUB_TIMEOUT
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(fetch, names))
    return str(Path(paths[0]).parents[len(Path(names[0]).parts) - 1])


def _refusal(where: str, exc: BaseException, revision: str | None = None) -> SrganError:
    """The one-line error for a Hub that answered no: gated, not found, a revision not found, access denied."""
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.GatedRepoError):
        return SrganError(
            f"{where}: the repo is gated; accept its terms on the Hub, then log in with 'hf auth login' "
            "(or set HF_TOKEN)"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return SrganError(
            f"{where}: repository not found; check the name, or log in with 'hf auth login' "
            "(or set HF_TOKEN) if it is private"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return SrganError(
            f"{where}: revision '{revision or DEFAULT_REVISION}' not found; check the branch, tag or commit"
        )
    status = _status(exc)
    if status == 401 and "invalid credentials" in _server_message(exc).lower():
        # A token was sent and the Hub does not know it: logging in is not what is missing.
        source = _token_source()
        if source == "environment":
            return SrganError(
                f"{where}: the Hub refused the token in HF_TOKEN (HTTP 401, invalid credentials); "
                "set a valid token there, or unset it to use the stored login"
            )
        if source == "login":
            return SrganError(
                f"{where}: the Hub refused the token of the stored login (HTTP 401, invalid credentials); "
                "log in again with 'hf auth login', or set HF_TOKEN"
            )
    if status == 403:
        source = _token_source()
        if source is None:
            return SrganError(
                f"{where}: access denied (HTTP 403); log in with 'hf auth login' (or set HF_TOKEN) "
                "with a token that may read this repo"
            )
        token = "HF_TOKEN" if source == "environment" else "the stored login"
        return SrganError(
            f"{where}: access denied (HTTP 403); check the permissions of the token in use ({token}): "
            "it may not read this repo"
        )
    return SrganError(f"{where}: access denied (HTTP {status}); log in with 'hf auth login' (or set HF_TOKEN)")


def _server_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    header = getattr(response, "headers", {}).get("X-Error-Message") if response is not None else None
    return str(header or getattr(exc, "server_message", None) or "")


def _token_source() -> str | None:
    """Where the token the Hub client sends comes from: "environment" (HF_TOKEN), "login" (the
    stored one of 'hf auth login'), or None (no token)."""
    if any(os.environ.get(name, "").strip() for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")):
        return "environment"
    try:
        from huggingface_hub import get_token

        return "login" if get_token() else None
    except Exception:  # noqa: BLE001 - an unreadable token file: no telling
        return None


def _status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _why(exc: BaseException) -> str:
    """What went wrong in a Hub request, for a message: a time-out (httpx's, whichever version the
    Hub client uses) as how long was waited."""
    if any("Timeout" in cls.__name__ for cls in type(exc).__mro__):
        return f"no answer within {HUB_TIMEOUT:g} s"
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.HfHubHTTPError) and _status(exc) is not None:
        return f"HTTP {_status(exc)}"
    return _first_line(exc) or type(exc).__name__


# Cached Hub files already checked in this process, by (real path, size, mtime): a blob in the
# Hugging Face cache is named by its ETag and never rewritten, so one strict load per run is enough.
_CHECKED: set[tuple[str, int, int]] = set()


def _check_loads(local: Path, ref: HubRef) -> None:
    """Arbitrary Hub files have no known sha256: they must at least load strictly. One that does not
    is refused and left where it is (only a file that fails a published sha256 is removed)."""
    real = local.resolve()
    try:
        info = real.stat()
        key = (str(real), info.st_size, info.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _CHECKED:
        return
    try:
        load_generator(local)
        if key is not None:
            _CHECKED.add(key)
    except SrganError as exc:
        # Left in the cache: it may be another tool's file there (the cache is shared), and with no
        # published sha256 there is no telling a damaged copy from a file that is not srgan's.
        raise SrganError(
            f"Hub repo '{ref.repo_id}' ({ref.filename}@{ref.revision}): the file is not usable srgan weights "
            f"({first_line(exc, 1000)})"
        ) from None


def _remove_cached(pointer: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    blob = pointer.resolve()
    for item in (pointer, blob):
        with contextlib.suppress(OSError):
            item.unlink()


_PATCH_LOCK = threading.Lock()
_patched: dict[str, object] = {}  # the retry lists _short_retries emptied, as they were


@contextlib.contextmanager
def _short_retries() -> Iterator[None]:
    """Fail fast: the Hub client otherwise retries a refused connection for ~20 s with backoff.

    Only inside our call, the module-level retry lists of ``huggingface_hub.file_download``
    are emptied (when this version has them), so an unreachable Hub fails within seconds.
    """
    try:
        from huggingface_hub import file_download
    except ImportError:  # pragma: no cover
        yield
        return
    names = ("_DEFAULT_RETRY_ON_EXCEPTIONS", "_DEFAULT_RETRY_ON_STATUS_CODES")
    with _PATCH_LOCK:
        _patched.update({name: getattr(file_download, name) for name in names if hasattr(file_download, name)})
        try:
            for name in _patched:
                setattr(file_download, name, ())
            yield
        finally:
            _restore_retries()


def _restore_retries() -> None:
    from huggingface_hub import file_download

    for name, value in _patched.items():
        setattr(file_download, name, value)
    _patched.clear()


def _after_fork_in_child() -> None:
    """A process forked during another thread's download: a fresh lock (the one that thread held
    stayed locked for good, and the child hung at its first Hub reference) and the retry lists back."""
    global _PATCH_LOCK
    _PATCH_LOCK = threading.Lock()
    if _patched:
        _restore_retries()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:  # pragma: no cover
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _first_line(exc: BaseException) -> str:
    return short_message(exc)


def short_message(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (a library's, quoted in one of ours), at most ``limit``
    characters: a longer one is cut at the end of a word, with "..." (cut mid-word, it read as a typo)."""
    line = first_line(exc, limit=len(str(exc))).strip() or type(exc).__name__
    if len(line) <= limit:
        return line
    cut = line[: limit - 2]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else cut[:-1]
    return cut.rstrip(" ,;:.") + "..."
