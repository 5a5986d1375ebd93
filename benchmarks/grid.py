"""Benchmark points and the preset grids.

A point is one (cell, dtype, shape, mode) configuration. The full cross
product of the values the suite must cover is thousands of points, most of
them telling nothing new, so each preset is a documented union of sweeps.

Cells: "lstm" and "gru" are the sequence modules (torch.nn.LSTM / GRU);
"lstmcell" and "grucell" are the single-step modules (torch.nn.LSTMCell /
GRUCell), timed per call. A cell point's T is the number of chained calls in
one timed repeat (h_t = cell(x_t, h_{t-1}), t < T, as a model's time loop
runs them; training backpropagates through the chain), and its times are
reported per call; layers = 1 and unidirectional.

GPU ``standard`` (every listed value appears at least once):
  1. sweep:  LSTM, GRU x fp32, tf32, fp16, bf16 x B in {1, 8, 16, 64, 256}
             x H in {256, 512, 768, 1024} (I = H), T=128, 1 layer, unidirectional,
             inference and training.
  2. long:   T=1024 at B in {16, 256} x H in {512, 1024}, same cells/dtypes/modes.
  3. stack:  2 layers, bidirectional, and both, at T=128, B=64, H=512.
  4. fastrnns: PyTorch's fastrnns default, LSTM T=100, B=64, I=H=512, fp32 (and tf32,
             PyTorch's default math for fp32).
  5. flashrnn: the published H100 comparison, LSTM H=768, B=16, T=1024, fp16 and bf16.
  6. cells:  LSTMCell, GRUCell x fp32, tf32, fp16, bf16 x B in {1, 64} x H in {128, 512},
             T=CELL_CALLS calls, both modes.
GPU ``quick`` (the GPU check): LSTM, GRU x fp32, bf16 x B in {8, 64, 256}, T=100,
  I=H=512, both modes (it contains the fastrnns point); LSTMCell, GRUCell x fp32
  x B in {1, 64} x H=512, both modes.
CPU ``standard`` (issue 10's table and targets):
  1. fastrnns: LSTM, GRU x fp32 x B in {1, 64}, T=100, I=H=512, both modes.
  2. cells:    LSTMCell, GRUCell x fp32 x B in {1, 64} x H in {128, 512}, both modes.
  3. bf16:     LSTM, GRU x bf16 x B in {1, 64}, T=100, I=H=512, both modes; LSTMCell,
               GRUCell x bf16 x B in {1, 64}, H=512, both modes.
  4. stack:    LSTM, GRU x fp32, 1 and 2 layers, uni- and bidirectional, T=100, B=16,
               I=H=256, both modes.
CPU ``quick``: LSTM, GRU x fp32 x B in {1, 16}, H=256, T=100, both modes;
  LSTMCell, GRUCell x fp32 x B in {1, 64}, H=128, both modes; LSTM, GRU x bf16,
  B=1, H=256, T=100, inference.

dtype names: "fp32" is float32 with TF32 off (cudnn.allow_tf32 and
cuda.matmul.allow_tf32 both False), "tf32" float32 with both on, "fp16",
"bf16". "tf32" only means something on CUDA.
"""
from __future__ import annotations

import dataclasses
import itertools

LAYERS = ("lstm", "gru")
CELL_KINDS = ("lstmcell", "grucell")
CELLS = LAYERS + CELL_KINDS
CELL_CALLS = 10  # chained calls per timed repeat of a cell point
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
        if self.is_cell and (self.layers != 1 or self.bidirectional):
            raise ValueError(f"a {self.cell} point has 1 layer and one direction")

    @property
    def is_cell(self) -> bool:
        """A single-step module timed per call (T chained calls per repeat)."""
        return self.cell in CELL_KINDS

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
          bidirectional=(False,), modes=MODES, cell_T=None) -> list[Point]:
    """Cross product of the given values; ``I=None`` means I = H.

    Cell kinds take ``cell_T`` (default: ``T``) as their calls per repeat and
    only 1 layer, unidirectional: other layer/direction values skip them.
    """
    points = []
    for c, d, b, h, lay, bi, m in itertools.product(cells, dtypes, B, H, layers,
                                                   bidirectional, modes):
        is_cell = c in CELL_KINDS
        if is_cell and (lay != 1 or bi):
            continue
        for t in (cell_T or T) if is_cell else T:
            for i in (I if I is not None else (h,)):
                points.append(Point(c, d, t, b, i, h, lay, bi, m))
    return _unique(points)


def _unique(points) -> list[Point]:
    """Drop repeats (the sweeps overlap), keep first-seen order."""
    seen, out = set(), []
    for p in points:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def cell_points(dtypes=("fp32",), B=(1, 64), H=(128, 512), modes=MODES) -> list[Point]:
    return cross(cells=CELL_KINDS, dtypes=dtypes, T=(CELL_CALLS,), B=B, H=H, modes=modes)


def gpu_standard() -> list[Point]:
    return _unique(
        cross(cells=LAYERS, T=(128,), B=(1, 8, 16, 64, 256), H=(256, 512, 768, 1024))
        + cross(cells=LAYERS, T=(1024,), B=(16, 256), H=(512, 1024))
        + cross(cells=LAYERS, T=(128,), B=(64,), H=(512,), layers=(1, 2),
                bidirectional=(False, True))
        + cross(cells=("lstm",), dtypes=("fp32", "tf32"), T=(100,), B=(64,), H=(512,))
        + cross(cells=("lstm",), dtypes=("fp16", "bf16"), T=(1024,), B=(16,), H=(768,))
        + cell_points(dtypes=DTYPES))


def gpu_quick() -> list[Point]:
    return (cross(cells=LAYERS, dtypes=("fp32", "bf16"), T=(100,), B=(8, 64, 256), H=(512,))
            + cell_points(H=(512,)))


def cpu_standard() -> list[Point]:
    # 56 points, sized for well under 15 minutes on a 2-core machine (estimate:
    # ~6 minutes quiet). The B=64, H=512 training points take about a second
    # per call on each side: 10 pairs, warm-up, gate and probe make ~25-30 s
    # each; every other point is about 4 s (the 2 s per side budget).
    return _unique(
        cross(cells=LAYERS, dtypes=("fp32",), T=(100,), B=(1, 64), H=(512,))
        + cell_points()
        + cross(cells=LAYERS, dtypes=("bf16",), T=(100,), B=(1, 64), H=(512,))
        + cell_points(dtypes=("bf16",), H=(512,))
        + cross(cells=LAYERS, dtypes=("fp32",), T=(100,), B=(16,), H=(256,), layers=(1, 2),
                bidirectional=(False, True)))


def cpu_quick() -> list[Point]:
    # A 2-core CPU needs seconds per call at B=64, H=512 (GRU training): that
    # point lives in cpu_standard, quick stays well under 2 minutes.
    return (cross(cells=LAYERS, dtypes=("fp32",), T=(100,), B=(1, 16), H=(256,))
            + cell_points(H=(128,))
            + cross(cells=LAYERS, dtypes=("bf16",), T=(100,), B=(1,), H=(256,),
                    modes=("inference",)))


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
