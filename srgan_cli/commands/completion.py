"""Shell completion of model names and set names (``eval "$(_SRGAN_COMPLETE=bash_source srgan)"``).

Completion runs the CLI on every Tab, so this module must not import torch: the names are
kept here and ``tests/test_models_cli.py`` checks them against :data:`srgan_cli.weights.MODELS`.
"""

from __future__ import annotations

from click.shell_completion import CompletionItem

MODEL_NAMES = ("srgan_x4", "srresnet_x4")
SET_NAMES = ("set5", "set14", "bsd100")


# The path item comes first: Click's bash script clears the replies when it meets one, and
# falls back to the shell's own path completion only when no name matched.
def _named(names: tuple[str, ...], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_model(ctx, param, incomplete: str) -> list[CompletionItem]:
    """A named model, else a file (the shell completes paths: a .safetensors file or a folder)."""
    return [CompletionItem(incomplete, type="file"), *_named(MODEL_NAMES, incomplete)]


def complete_bench_model(ctx, param, incomplete: str) -> list[CompletionItem]:
    """As :func:`complete_model`, plus the ``bicubic`` baseline of ``srgan bench``."""
    return [CompletionItem(incomplete, type="file"), *_named(("bicubic", *MODEL_NAMES), incomplete)]


def complete_set(ctx, param, incomplete: str) -> list[CompletionItem]:
    """A named benchmark set, else a folder."""
    return [CompletionItem(incomplete, type="dir"), *_named(SET_NAMES, incomplete)]
