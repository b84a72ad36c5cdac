"""The benchmark grid and the FLOP model."""

from __future__ import annotations

import dataclasses

import numpy as np

CELLS = ("elman", "lstm", "gru")
GATES = {"elman": 1, "lstm": 4, "gru": 3}

# (B, T, H), with I = H: the grid.
SHAPES = ((32, 200, 128), (64, 100, 256), (16, 500, 64), (64, 100, 512), (1, 1000, 128))
QUICK_SHAPES = ((32, 200, 128), (16, 500, 64))


@dataclasses.dataclass(frozen=True)
class Config:
    cell: str
    batch: int
    time: int
    hidden: int

    @property
    def input_size(self) -> int:
        return self.hidden

    @property
    def name(self) -> str:
        return f"{self.cell} B{self.batch} T{self.time} H{self.hidden}"

    def as_dict(self) -> dict:
        return dict(cell=self.cell, B=self.batch, T=self.time, H=self.hidden, I=self.input_size)

    def flops(self, mode: str) -> float:
        """Matmul FLOPs of one call: ``2 B T G H (I + H)`` forward; forward+backward is 3x that (the backward
        pass does two matmuls per forward matmul: one for the weights, one for the inputs or the state)."""
        G = GATES[self.cell]
        forward = 2.0 * self.batch * self.time * G * self.hidden * (self.input_size + self.hidden)
        return forward if mode == "fwd" else 3.0 * forward


def grid(cells=CELLS, shapes=SHAPES) -> list[Config]:
    return [Config(c, *s) for c in cells for s in shapes]


def inputs(cfg: Config, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The input ``x[B, T, I]`` and the output cotangent ``g[B, T, H]`` of one configuration (NumPy, float32), the
    same for every framework."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.batch, cfg.time, cfg.input_size)).astype(np.float32)
    g = rng.standard_normal((cfg.batch, cfg.time, cfg.hidden)).astype(np.float32)
    return x, g
