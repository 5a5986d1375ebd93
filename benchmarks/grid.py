"""Benchmark points and the preset grids.

A point is one (cell, dtype, shape, mode) configuration. The full cross
product of the values the suite must cover is thousands of points, most of
them telling nothing new, so each preset is a documented union of sweeps:

GPU ``standard`` (every listed value appears at least once):
  1. sweep:  LSTM, GRU x fp32, tf32, fp16, bf16 x B in {1, 8, 16, 64, 256}
             x H in {256, 512, 768, 1024} (I = H), T=128, 1 layer, unidirectional,
             inference and training.
  2. long:   T=1024 at B in {16, 256} x H in {512, 1024}, same cells/dtypes/modes.
  3. stack:  2 layers, bidirectional, and both, at T=128, B=64, H=512.
  4. fastrnns: PyTorch's fastrnns default, LSTM T=100, B=64, I=H=512, fp32 (and tf32,
             PyTorch's default math for fp32).
  5. flashrnn: the published H100 comparison, LSTM H=768, B=16, T=1024, fp16 and bf16.
GPU ``quick`` (the GPU check): LSTM, GRU x fp32, bf16 x B in {8, 64, 256}, T=100,
  I=H=512, both modes; it contains the fastrnns point.
CPU ``standard``: LSTM, GRU x fp32 x B in {1, 16, 64} x H in {128, 256, 512}, T=100,
  both modes, plus 2 layers and bidirectional at B=16, H=256.
CPU ``quick``: LSTM, GRU x fp32 x B in {1, 16}, H=256, T=100, both modes.

dtype names: "fp32" is float32 with TF32 off (cudnn.allow_tf32 and
cuda.matmul.allow_tf32 both False), "tf32" float32 with both on, "fp16",
"bf16". "tf32" only means something on CUDA.
"""
from __future__ import annotations

import dataclasses
import itertools

CELLS = ("lstm", "gru")
DTYPES = ("fp32", "tf32", "fp16", "bf16")
MODES = ("inference", "training")
PRESETS = ("quick", "standard")


@dataclasses.dataclass(frozen=True, order=True)
class Point:
    cell: str
    dtype: str
    T: int
    B: int
    I: int  # noqa: E741 (the letter the issue uses)
    H: int
    layers: int = 1
    bidirectional: bool = False
    mode: str = "inference"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("T", "B", "I", "H", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def id(self) -> str:
        direction = "bi" if self.bidirectional else "uni"
        return (f"{self.cell}-{self.dtype}-T{self.T}-B{self.B}-I{self.I}-H{self.H}"
                f"-L{self.layers}-{direction}-{self.mode}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def cross(cells=CELLS, dtypes=DTYPES, T=(128,), B=(64,), H=(512,), I=None, layers=(1,),
          bidirectional=(False,), modes=MODES) -> list[Point]:
    """Cross product of the given values; ``I=None`` means I = H."""
    points = []
    for c, d, t, b, h, lay, bi, m in itertools.product(cells, dtypes, T, B, H, layers,
                                                       bidirectional, modes):
        for i in (I if I is not None else (h,)):
            points.append(Point(c, d, t, b, i, h, lay, bi, m))
    return points


def _unique(points) -> list[Point]:
    """Drop repeats (the sweeps overlap), keep first-seen order."""
    seen, out = set(), []
    for p in points:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def gpu_standard() -> list[Point]:
    return _unique(
        cross(T=(128,), B=(1, 8, 16, 64, 256), H=(256, 512, 768, 1024))
        + cross(T=(1024,), B=(16, 256), H=(512, 1024))
        + cross(T=(128,), B=(64,), H=(512,), layers=(1, 2), bidirectional=(False, True))
        + cross(cells=("lstm",), dtypes=("fp32", "tf32"), T=(100,), B=(64,), H=(512,))
        + cross(cells=("lstm",), dtypes=("fp16", "bf16"), T=(1024,), B=(16,), H=(768,)))


def gpu_quick() -> list[Point]:
    return cross(dtypes=("fp32", "bf16"), T=(100,), B=(8, 64, 256), H=(512,))


def cpu_standard() -> list[Point]:
    return _unique(
        cross(dtypes=("fp32",), T=(100,), B=(1, 16, 64), H=(128, 256, 512))
        + cross(dtypes=("fp32",), T=(100,), B=(16,), H=(256,), layers=(1, 2),
                bidirectional=(False, True)))


def cpu_quick() -> list[Point]:
    # A 2-core CPU needs seconds per call at B=64, H=512 (GRU training): that
    # point lives in cpu_standard, quick stays well under 2 minutes.
    return cross(dtypes=("fp32",), T=(100,), B=(1, 16), H=(256,))


def preset(name: str, device_type: str) -> list[Point]:
    """The named preset for a device type ("cuda" or "cpu")."""
    table = {("quick", "cuda"): gpu_quick, ("standard", "cuda"): gpu_standard,
             ("quick", "cpu"): cpu_quick, ("standard", "cpu"): cpu_standard}
    try:
        return table[(name, device_type)]()
    except KeyError:
        raise ValueError(f"no preset {name!r} for device {device_type!r}; "
                         f"presets: {PRESETS}") from None


def parse_list(text: str, kind=str) -> tuple:
    """'1,8,16' -> (1, 8, 16); booleans accept 0/1/true/false/yes/no/bi/uni."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if kind is bool:
        truth = {"1": True, "true": True, "yes": True, "bi": True,
                 "0": False, "false": False, "no": False, "uni": False}
        try:
            return tuple(truth[s.lower()] for s in items)
        except KeyError as e:
            raise ValueError(f"not a boolean: {e.args[0]!r}") from None
    return tuple(kind(s) for s in items)
