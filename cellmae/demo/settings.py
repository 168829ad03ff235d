"""What a demo run is made of: one dataclass of every knob, with the defaults `cellmae demo` uses.

The defaults are sized for the ~10 minute CPU budget of the README's main command on 2 cores:
the ``demo`` simulated screen, the ``tiny-camae`` training preset for a fixed number of steps
(capped by wall-clock minutes), every block of the tiny encoder embedded, TVN alignment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

MODEL = "camae"  # the trained model's name under RUN/train, RUN/embed, ... (DESIGN.md run layout)
TRANSFER_DIR = "transfer"  # RUN/transfer is a run directory of its own (screen/, embed/, map/, bench/)


@dataclass
class DemoSettings:
    """Every knob of a demo run; ``stage_key`` hashes the ones each stage's output depends on."""

    out: Path = Path("runs/demo")
    screen: Path | None = None  # your own screen (RxRx / Cell Painting layout) instead of the simulated one
    checkpoint: Path | None = None  # your own model (checkpoint dir or OpenPhenom file) instead of training
    preset: str = "demo"  # simulator preset when no --screen is given
    # Simulator overrides (key=value) for both screens. 128px fields hold 4 embedding tiles instead of
    # 16: the whole screen is featurized 4x faster, which is what fits the 10 minute CPU budget.
    simulate_overrides: tuple[str, ...] = ("field_size=128",)
    seed: int = 0
    train_config: str = "tiny-camae"  # cellmae.train preset name or YAML path
    # The tiny CA-MAE sits on the "predict the mean" plateau (loss ~1.0) for its first ~150 steps and only
    # then learns structure (loss 0.58 at step 750); fewer steps give features no better than random-init.
    steps: int = 1000
    max_train_minutes: float | None = 5.0
    train_overrides: tuple[str, ...] = ()  # extra key=value overrides for cellmae.train
    crop_size: int = 64
    crops_per_field: int = 16
    blocks: str = "all"  # blocks of the trained model to embed ("all", "last", "2,4")
    tile: int = 64
    # Token pooling of the ViTs (trained and random-init alike). "cls", not "mean": on self-standardized
    # crops the mean over channel x patch tokens of this shallow model is nearly the same vector for every
    # well (blocks 1-4 of random-init correlate at 0.99999, of the trained model at 0.95-0.996), so mean
    # pooling scored at chance (sim-truth recall 0.07-0.11) where the attention-pooled CLS token reached
    # 0.14-0.18 vs 0.08-0.12 for random-init (measured on the 5 min demo model).
    pool: str = "cls"
    batch_size: int = 64  # embedding batch
    align: str = "tvn"
    relationships: tuple[Path, ...] = ()  # extra relationship CSVs / folders (entity1,entity2)
    baselines: tuple[str, ...] = ("random-init", "handcrafted")
    wsl: bool = False  # also train and compare a weakly supervised classifier
    transfer_preset: str | None = "cellpainting-demo"  # None skips the channel-transfer experiment
    device: str = "auto"
    workers: int | None = None  # embedding decode workers (None: the embed stage's default)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.screen = Path(self.screen) if self.screen is not None else None
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        self.relationships = tuple(Path(p) for p in self.relationships)
        self.simulate_overrides = tuple(self.simulate_overrides)
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ValueError(f"--max-train-minutes must be > 0, got {self.max_train_minutes}")
        unknown = sorted(set(self.baselines) - {"random-init", "handcrafted"})
        if unknown:
            raise ValueError(f"--baselines: unknown {unknown}; choose from random-init, handcrafted (and --wsl)")
        self.simulate_kwargs()  # fail on a bad simulator key now, not after minutes of work
        for p in (self.screen, self.checkpoint, *self.relationships):
            if p is not None and not p.exists():
                raise FileNotFoundError(f"{p}: not found")

    def simulate_kwargs(self) -> dict:
        """``simulate_overrides`` parsed and typed by the simulator (errors name the bad key)."""
        from cellmae.data.simulate.presets import parse_override

        return dict(parse_override(item) for item in self.simulate_overrides)

    def record(self) -> dict:
        """JSON-able settings (saved to RUN/demo.json and shown in the report)."""
        rec = asdict(self)
        return json.loads(json.dumps(rec, default=str))

    def stage_key(self, *names: str, upstream: str = "") -> str:
        """A short hash of the named settings plus the upstream stage's key: equal keys mean reusable output."""
        rec = self.record()
        payload = json.dumps({"upstream": upstream, **{n: rec[n] for n in names}}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
