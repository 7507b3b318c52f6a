"""Fill the ignored folder .gpu/ with the data a plan of benchmarks/gpu_check.sh needs, inside
the 64 MiB one device call may send (the checkout itself counts), and print the sizes.

    python benchmarks/gpu_pack.py --plan mse      # all training images, Set5
    python benchmarks/gpu_pack.py --plan gan      # VGG19, Set5 and the training images that fit
    python benchmarks/gpu_pack.py --plan esrgan   # the same, for both ESRGAN stages in one call

The plans that need the VGG19 file (38 MiB) leave room for about 10 MiB of training images.
`--lpips FILE` adds the LPIPS weights (`python -m srgan_cli.perceptual` makes them; 9.4 MiB)
as .gpu/lpips.safetensors, so that the runs' validation logs LPIPS beside PSNR (gpu_check.sh
points SRGAN_LPIPS_WEIGHTS at it); they take the place of training images.
They are taken in the order of --prefer, whole sets first: Sun-Hays 80 holds the most pixels
per byte (60 Mpx in 9.8 MB of JPEG, against 5 Mpx in 9.6 MB of PNG for T91), then BSDS500's
images one by one, by name, until the next one would not fit. Files are copied, not linked
(a call does not send links). Exits 1 if the call would be over the limit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 64 * 2**20
PLANS = {"mse": False, "rrdb": False, "gan": True, "esrgan": True}  # plan -> needs VGG19
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def checkout_bytes(root: Path) -> int:
    """Bytes of what a call sends besides .gpu/: tracked files and untracked, unignored ones."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = root / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _error(text: str) -> int:
    sys.stderr.write(f"error: {text}\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", choices=sorted(PLANS), default="mse")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="holds train/, bench/, vgg19/")
    ap.add_argument("--prefer", default="sun_hays80,bsds500,t91", help="training sets in the order they are taken")
    ap.add_argument("--margin-mib", type=float, default=0.5, help="room kept free under the limit")
    ap.add_argument("--limit-mib", type=float, default=LIMIT / 2**20, help="what one call may send")
    ap.add_argument("--lpips", type=Path, help="LPIPS weights file to send as .gpu/lpips.safetensors")
    ap.add_argument("--dest", type=Path, default=ROOT / ".gpu", help=argparse.SUPPRESS)  # tests
    args = ap.parse_args(argv)
    if not args.limit_mib > 0 or not args.margin_mib >= 0:
        ap.error("--limit-mib must be positive and --margin-mib at least 0")
    limit = int(args.limit_mib * 2**20)

    # Every input is checked before .gpu/ is emptied: a wrong --data leaves the last pack as it was.
    set5 = args.data / "bench" / "set5"
    needs = "train/, bench/set5/ and vgg19/" if PLANS[args.plan] else "train/ and bench/set5/"
    for folder in (args.data, set5, args.data / "train"):
        if not folder.is_dir():
            return _error(f"{folder}: no such folder; --data must hold {needs}")
    vgg = sorted((args.data / "vgg19").glob("*.safetensors")) if PLANS[args.plan] else []
    if PLANS[args.plan] and not vgg:
        return _error(f"no VGG19 .safetensors under {args.data / 'vgg19'} (plan {args.plan} needs it)")
    if args.lpips is not None and not args.lpips.is_file():
        return _error(f"{args.lpips}: no such file")
    try:
        base = checkout_bytes(ROOT)
    except (OSError, subprocess.CalledProcessError) as exc:
        return _error(f"cannot list the checkout's files with git ls-files ({exc})")

    gpu = args.dest
    if gpu.exists():
        shutil.rmtree(gpu)
    (gpu / "bench").mkdir(parents=True)
    shutil.copytree(set5, gpu / "bench" / "set5")
    if vgg:
        shutil.copyfile(vgg[0], gpu / "vgg19.safetensors")
    if args.lpips is not None:
        shutil.copyfile(args.lpips, gpu / "lpips.safetensors")

    room = limit - int(args.margin_mib * 2**20) - base - tree_bytes(gpu)
    train = gpu / "train"
    taken: dict[str, tuple[int, int]] = {}
    sets = [s for s in args.prefer.split(",") if s]
    sets += sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir() and p.name not in sets)
    full = False
    for name in sets:
        for src in images(args.data / "train" / name):
            size = src.stat().st_size
            if size > room:
                full = True
                break
            dst = train / src.relative_to(args.data / "train")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            room -= size
            n, b = taken.get(name, (0, 0))
            taken[name] = (n + 1, b + size)
        if full:
            break

    mib = 2**20
    say = print  # noqa: T201 - this script's output is its report
    say(f"plan {args.plan}: checkout {base / mib:.1f} MiB")
    for name in ("vgg19.safetensors", "lpips.safetensors", "bench"):
        if (gpu / name).exists():
            say(f"  .gpu/{name}: {tree_bytes(gpu / name) / mib:.1f} MiB")
    for name, (n, b) in taken.items():
        have = len(images(args.data / "train" / name))
        say(f"  .gpu/train/{name}: {n} of {have} images, {b / mib:.1f} MiB")
    total = base + tree_bytes(gpu)
    say(f'total {total / mib:.1f} of {args.limit_mib:g} MiB: carry [".gpu"]')
    if total > limit:
        return _error(f"{total / mib:.1f} MiB is over the limit of {args.limit_mib:g} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
