"""Device and precision choice."""

from __future__ import annotations

import contextlib

import torch

from .config import DEVICES, PRECISIONS
from .errors import SrganError

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name in ("cpu", "cpu:0", "mps:0"):  # str(torch.device("cpu", 0)) is "cpu:0": one CPU device, one MPS one
        name = name.split(":")[0]
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise SrganError("--device mps: MPS is not available on this machine; use --device cpu")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        index = 0
        if name != "cuda":
            try:
                index = int(name.split(":", 1)[1])
            except ValueError:
                raise SrganError(f"--device {name}: expected cuda:N with N a GPU index") from None
        if not torch.cuda.is_available():
            raise SrganError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        if index >= torch.cuda.device_count():
            raise SrganError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) found")
        return torch.device("cuda", index)
    raise SrganError(f"unknown device {name!r}; expected one of {DEVICES}")


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AMX or AVX512-BF16), so that bf16
    convolutions run several times faster than fp32 ones; elsewhere bf16 is emulated and slow."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:
        return False


def choose_dtype(precision: str, device: torch.device, *, cpu_bf16: bool = False) -> tuple[torch.dtype, str | None]:
    """The compute dtype for ``precision`` on ``device``, and a note when it was changed.

    ``auto`` is fp16 on CUDA and MPS; on the CPU it is fp32, or bf16 when ``cpu_bf16`` is set
    (inference, where bf16 output is within about 0.45 gray levels RMS of fp32's on photos) and
    the CPU runs bf16 natively. fp16 on the CPU is mapped to fp32, with a note: CPU fp16 convolutions
    run, but slowly (srresnet_x4 on a 64 px crop: 0.78 s against 0.14 s in fp32). This is the dtype
    of the model's weights; under ``auto``, images of more than 8 bits still run in fp32
    (``api.upscale_array``), as bf16 and fp16 would cut them.
    """
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise SrganError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16, None
        return (torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else torch.float32), None
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32, "fp16 runs about 5x slower than fp32 on the CPU; running in fp32"
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float16, "this GPU has no bf16; running in fp16"
    if device.type == "mps" and dtype == torch.bfloat16 and not _mps_has_bf16():
        return torch.float16, "MPS has bf16 from macOS 14 on; running in fp16"
    return dtype, None


def _mps_has_bf16() -> bool:
    """Whether MPS takes bf16 tensors (macOS 14 and later): before, moving the model to bf16 raised."""
    try:
        torch.zeros(1, dtype=torch.bfloat16, device="mps")
    except Exception:  # noqa: BLE001 - TypeError or RuntimeError, by PyTorch version
        return False
    return True


def device_name(device: torch.device) -> str:
    """What a benchmark table should say the device is: the GPU's or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        import platform

        return _mac_chip() or platform.processor() or platform.machine()
    if device.type == "mps":
        return f"{_mac_chip() or 'Apple'} GPU (MPS)"
    return device.type


def _mac_chip() -> str | None:
    """The Mac's chip ("Apple M2 Pro"), where platform.processor() says only "arm"."""
    import sys

    if sys.platform != "darwin":
        return None
    import subprocess

    try:
        done = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def autocast_available(device_type: str) -> bool:
    """Whether this PyTorch has autocast for ``device_type``: MPS only from PyTorch 2.5."""
    check = getattr(getattr(torch, "amp", None), "is_autocast_available", None)
    if check is None:  # PyTorch before 2.4: CPU and CUDA
        return device_type in ("cpu", "cuda")
    try:
        return bool(check(device_type))
    except Exception:  # noqa: BLE001 - an unknown device type
        return False


def autocast(device_type: str, *, enabled: bool = True, **kwargs) -> contextlib.AbstractContextManager:
    """``torch.autocast``, where it is available for the device. Where it is not, off is nothing to
    do (before PyTorch 2.5, ``torch.autocast("mps", enabled=False)`` raised, and every upscale on a
    Mac failed), and on is a one-line error naming the way out."""
    if autocast_available(device_type):
        return torch.autocast(device_type, enabled=enabled, **kwargs)
    if not enabled:
        return contextlib.nullcontext()
    raise SrganError(
        f"mixed precision on {device_type} needs a newer PyTorch (2.5 or later for mps, this is "
        f"{torch.__version__}); use --precision fp32"
    )


def active_autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast is on with for ``device_type`` here, or None where it is off (the
    per-device queries are PyTorch 2.4's; before, CPU and CUDA had their own functions)."""
    try:
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # PyTorch before 2.4, or a type without autocast
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None
