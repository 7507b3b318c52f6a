"""Shell completion of model names and set names (``eval "$(_SRGAN_COMPLETE=bash_source srgan)"``).

Completion runs the CLI on every Tab, so this module must not import torch: the names are
kept here and ``tests/test_models_cli.py`` checks them against :data:`srgan_cli.weights.MODELS`.
"""

from __future__ import annotations

import os

from click.shell_completion import CompletionItem

MODEL_NAMES = ("srgan_x4", "srresnet_x4")
SET_NAMES = ("set5", "set14", "bsd100")
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def _named(names: tuple[str, ...], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def _zsh() -> bool:
    """Whether zsh asked (click sets ``_SRGAN_COMPLETE=zsh_complete`` for it)."""
    return any(key.endswith("_COMPLETE") and value.startswith("zsh") for key, value in os.environ.items())


def _with_path(kind: str, incomplete: str, names: list[CompletionItem]) -> list[CompletionItem]:
    """``names`` and a path item (``kind`` file or dir), which makes the shell complete paths.

    The path item comes first for bash and fish: Click's bash script clears the replies when it
    meets one, and falls back to the shell's own path completion only when no name matched. It
    comes last for zsh: Click's zsh script reads the replies as (type, value, help) triples from
    an unquoted array, where zsh drops an empty value, so a first path item with nothing typed yet
    shifted every name out of its triple and no name was offered."""
    path = CompletionItem(incomplete, type=kind)
    return [*names, path] if _zsh() else [path, *names]


def complete_model(ctx, param, incomplete: str) -> list[CompletionItem]:
    """A named model, else a file (the shell completes paths: a .safetensors file or a folder)."""
    return _with_path("file", incomplete, _named(MODEL_NAMES, incomplete))


def complete_blend(ctx, param, incomplete: str) -> list[CompletionItem]:
    """--blend MODEL:ALPHA: the model as for -m; nothing to offer once the ALPHA is being typed."""
    return [] if ":" in incomplete else complete_model(ctx, param, incomplete)


def complete_bench_model(ctx, param, incomplete: str) -> list[CompletionItem]:
    """As :func:`complete_model`, plus the ``bicubic`` baseline of ``srgan bench``."""
    return _with_path("file", incomplete, _named(("bicubic", *MODEL_NAMES), incomplete))


def complete_set(ctx, param, incomplete: str) -> list[CompletionItem]:
    """A named benchmark set, else a folder."""
    return _with_path("dir", incomplete, _named(SET_NAMES, incomplete))


def complete_device(ctx, param, incomplete: str) -> list[CompletionItem]:
    """--device: the kinds (cuda:N is typed out)."""
    return _named(DEVICE_NAMES, incomplete)


def complete_file(ctx, param, incomplete: str) -> list[CompletionItem]:
    """A file name, for an option typed as text because it also takes '-'."""
    return [CompletionItem(incomplete, type="file")]
