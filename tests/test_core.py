"""Config, device/precision choice, atomic writes and the command group."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from srgan_cli import fsutil
from srgan_cli.cli import main
from srgan_cli.config import DiscriminatorConfig, GeneratorConfig
from srgan_cli.device import choose_device, choose_dtype
from srgan_cli.errors import SrganError
from srgan_cli.fsutil import atomic_path

# -- config -------------------------------------------------------------------------------------


def test_config_json_round_trip():
    for cfg in (
        GeneratorConfig(),
        GeneratorConfig.for_arch("rrdb", num_blocks=3),
        GeneratorConfig(scale=8, batch_norm=False),
    ):
        assert GeneratorConfig.from_json(cfg.to_json()) == cfg


def test_rrdb_defaults_follow_esrgan():
    cfg = GeneratorConfig.for_arch("rrdb")
    assert (cfg.num_blocks, cfg.num_features, cfg.growth_channels, cfg.batch_norm) == (23, 64, 32, False)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"arch": "unet"}', "unknown generator arch"),
        ('{"scale": 3}', "unsupported scale"),
        ('{"num_blocks": "16"}', "num_blocks must be int"),
        ('{"colour": 1}', "unknown keys: colour"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
        ('{"arch": "rrdb", "batch_norm": true}', "no BatchNorm"),
    ],
)
def test_config_rejects_bad_input(text, fragment):
    with pytest.raises(SrganError, match=fragment):
        GeneratorConfig.from_json(text)


def test_discriminator_patch_must_be_multiple_of_16():
    DiscriminatorConfig(patch_size=128)
    with pytest.raises(SrganError):
        DiscriminatorConfig(patch_size=100)


def test_unet_discriminator_gives_a_logit_per_pixel_with_spectrally_normalised_convs():
    from torch.nn.utils import parametrize

    from srgan_cli.models import build_discriminator

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    d = build_discriminator(DiscriminatorConfig(patch_size=32, arch="unet", num_features=8)).train()
    sn = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d) and parametrize.is_parametrized(m)]
    assert len(sn) == 8  # all but the first conv and the head
    with torch.no_grad():
        for m in sn:
            m.parametrizations.weight.original.mul_(10.0)  # whatever the raw weights' scale ...
        for _ in range(50):  # ... once the power iteration has converged ...
            out = d(x)
    assert out.shape == (2, 1, 32, 32)
    for m in sn:  # ... each conv's largest singular value is 1
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1.0) < 0.05
    assert build_discriminator(DiscriminatorConfig(patch_size=32))(x).shape == (2, 1)  # the paper's: one a patch
    with pytest.raises(SrganError, match="arch"):
        DiscriminatorConfig(arch="patch")


# -- device and precision -----------------------------------------------------------------------


def test_choose_device_cpu_and_auto():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(SrganError, match="CUDA is not available"):
        choose_device("cuda:0")


@pytest.mark.parametrize("name", ["tpu", "cuda:x"])
def test_unknown_device(name):
    with pytest.raises(SrganError):
        choose_device(name)


def test_half_precision_on_cpu_is_mapped_with_a_note():
    dtype, note = choose_dtype("fp16", torch.device("cpu"))
    assert dtype == torch.float32 and "fp32" in note
    assert choose_dtype("auto", torch.device("cpu")) == (torch.float32, None)
    assert choose_dtype("bf16", torch.device("cpu"))[0] == torch.bfloat16
    with pytest.raises(SrganError):
        choose_dtype("int8", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_precision_is_fp16_on_cuda():
    assert choose_dtype("auto", torch.device("cuda"))[0] == torch.float16


# -- atomic writes ------------------------------------------------------------------------------


def test_atomic_path_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_path_without_overwrite_never_clobbers(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        with atomic_path(dest, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
    assert dest.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_path_respects_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    """`srgan upscale --overwrite` onto a private 0600 file made it 0644 (the new file's umask)."""
    dest = tmp_path / "private.png"
    dest.write_bytes(b"old")
    dest.chmod(0o600)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and dest.stat().st_mode & 0o777 == 0o600


def test_atomic_path_never_sets_the_umask(tmp_path, monkeypatch):
    # Reading the umask means setting it for a moment, during which another thread's new files
    # would get the wrong permissions: the temp file is created so that the kernel applies it.
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    for overwrite in (True, False):
        with atomic_path(tmp_path / f"f{overwrite}", overwrite=overwrite) as tmp:
            tmp.write_bytes(b"x")
    assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fFalse", "fTrue"]


@pytest.mark.parametrize("name", ["a" * 251 + ".png", "\u5199" * 83 + ".png"], ids=["ascii", "utf8"])
def test_atomic_path_takes_the_longest_names_the_filesystem_does(tmp_path, name):
    assert 250 <= len(os.fsencode(name)) <= 255
    for overwrite in (False, True):
        with atomic_path(tmp_path / name, overwrite=overwrite) as tmp:
            assert tmp.name.startswith(".") and tmp.name.endswith(".part")
            tmp.write_bytes(b"x" if overwrite else b"y")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == b"x"


def _no_hard_links(monkeypatch, err=errno.EPERM):
    """link() as FAT and exFAT answer it (EPERM), or some network shares (EOPNOTSUPP)."""

    def refuse(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fsutil.os, "link", refuse)


@pytest.mark.parametrize("err", [errno.EPERM, errno.EOPNOTSUPP], ids=["EPERM", "EOPNOTSUPP"])
def test_atomic_path_without_hard_links_writes_and_never_clobbers(tmp_path, monkeypatch, err):
    _no_hard_links(monkeypatch, err)
    dest = tmp_path / "out.bin"
    with atomic_path(dest, overwrite=False) as tmp:
        tmp.write_bytes(b"ours")
    assert dest.read_bytes() == b"ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(FileExistsError):
        with atomic_path(dest, overwrite=False) as tmp:
            tmp.write_bytes(b"again")
    assert dest.read_bytes() == b"ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_path_without_hard_links_leaves_nothing_when_the_rename_fails(tmp_path, monkeypatch):
    _no_hard_links(monkeypatch)

    def fail(*a, **k):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fsutil.os, "replace", fail)
    with pytest.raises(OSError, match="Input/output"):
        with atomic_path(tmp_path / "out.bin", overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_where_modes_are_refused(tmp_path, monkeypatch):
    def refuse(*a, **k):  # chmod on FAT/exFAT for a mode the mount does not give
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(fsutil.os, "chmod", refuse)
    for overwrite in (True, False):
        dest = tmp_path / f"out{overwrite}.bin"
        with atomic_path(dest, overwrite=overwrite) as tmp:
            tmp.write_bytes(b"x")
        assert dest.read_bytes() == b"x"
    assert len(list(tmp_path.iterdir())) == 2


# -- the command group --------------------------------------------------------------------------


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "models" in result.output


@pytest.mark.parametrize("command", [[], ["upscale"], ["bench"], ["train"], ["models"], ["interpolate"]])
def test_help_fits_an_80_column_terminal(command):
    """Examples in bench's help ran to 87 columns and wrapped raggedly at 80."""
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if len(line) > 80] == []


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "srgan" in result.output


def test_models_json_lists_the_table():
    import json

    from srgan_cli.weights import DEFAULT_MODEL, MODELS

    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {row["name"] for row in rows} == set(MODELS)
    assert [row["name"] for row in rows if row["default"]] == [DEFAULT_MODEL]


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "srgan_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "models" in proc.stdout


def test_device_name_is_never_empty():
    from srgan_cli.device import device_name

    assert device_name(torch.device("cpu")).strip()
    assert device_name(torch.device("meta")) == "meta"


def test_autocast_where_this_pytorch_has_none_for_the_device(monkeypatch):
    """Before PyTorch 2.5, torch.autocast("mps", enabled=False) raised: every upscale on a Mac
    failed. Off is then nothing to do; on is a one-line error naming the way out."""
    import torch

    from srgan_cli import device as device_module
    from srgan_cli.api import load_model
    from srgan_cli.errors import SrganError

    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with device_module.autocast("cpu", enabled=False):
        pass
    with pytest.raises(SrganError, match="needs a newer PyTorch .*--precision fp32"):
        device_module.autocast("cpu", dtype=torch.bfloat16)
    model = load_model("srresnet_x4", device="cpu", precision="fp32")
    out = model.forward(torch.zeros(1, 3, 8, 8))  # its forward turns a caller's autocast off: no error here
    assert out.shape == (1, 3, 32, 32)


def test_the_autocast_dtype_is_read_also_with_pytorchs_older_functions(monkeypatch):
    import torch

    from srgan_cli.device import active_autocast_dtype

    assert active_autocast_dtype("cpu") is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert active_autocast_dtype("cpu") == torch.bfloat16

        def old_is_enabled(*args):  # PyTorch before 2.4: no device argument
            if args:
                raise TypeError("is_autocast_enabled() takes 0 positional arguments")
            return False

        monkeypatch.setattr(torch, "is_autocast_enabled", old_is_enabled)
        assert active_autocast_dtype("cpu") == torch.bfloat16  # torch.is_autocast_cpu_enabled
        assert active_autocast_dtype("cuda") is None


def test_training_on_mps_defaults_to_fp32():
    """auto was fp16 on MPS, with no loss scaling there (the scaler is CUDA's)."""
    import torch

    from srgan_cli.train import train_dtype

    assert train_dtype("auto", torch.device("mps")) == (torch.float32, None)
    assert train_dtype("fp16", torch.device("mps"))[0] == torch.float16  # asked for: as asked
    assert train_dtype("auto", torch.device("cpu"))[0] == torch.float32


def test_bf16_on_an_mps_without_it_runs_in_fp16_with_a_note(monkeypatch):
    """macOS 13's MPS has no bf16: moving the model to it raised (a traceback)."""
    import torch

    from srgan_cli import device as device_module

    monkeypatch.setattr(device_module, "_mps_has_bf16", lambda: False)
    dtype, note = device_module.choose_dtype("bf16", torch.device("mps"))
    assert dtype == torch.float16 and "macOS 14" in note
    monkeypatch.setattr(device_module, "_mps_has_bf16", lambda: True)
    assert device_module.choose_dtype("bf16", torch.device("mps")) == (torch.bfloat16, None)


def test_ctrl_break_stops_as_ctrl_c_does_where_there_is_one(monkeypatch):
    import signal

    from srgan_cli.stopping import stop_signals

    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR2, raising=False)  # as Windows has it
    monkeypatch.setattr(signal, "getsignal", lambda signum: signal.SIG_DFL)
    assert signal.SIGUSR2 in stop_signals()


def test_a_macs_chip_is_named_in_the_bench_table(monkeypatch):
    """platform.processor() says "arm" on Apple silicon: the bench table said "arm"."""
    import subprocess
    import sys

    import torch

    from srgan_cli import device as device_module

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(
        subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a[0], 0, stdout="Apple M2 Pro\n", stderr="")
    )
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc on a Mac")))
    assert device_module.device_name(torch.device("cpu")) == "Apple M2 Pro"
    assert device_module.device_name(torch.device("mps")) == "Apple M2 Pro GPU (MPS)"
