"""What a demo run is made of: one dataclass of every knob, with the defaults `cellmae demo` uses.

The defaults are sized for the ~10 minute CPU budget of the README's main command on 2 cores:
the ``demo`` simulated screen, the ``demo-camae`` training preset for a fixed number of steps (a
compute budget, so a busy machine gives the same numbers, only later), every block of the tiny
encoder embedded, TVN alignment.
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
    # Simulator overrides (key=value) for both screens. None by default: the preset's 256 px fields hold
    # ~75 cells per well. At 128 px (~19 cells) the wells were too noisy for the 5-minute model: its
    # sim-truth recall was 0.09-0.16, within noise of random-init; the same model scored 0.17-0.26 on
    # the 256 px screen (random-init 0.126, i.e. chance). 4x the pixels of 128 px fields to embed.
    simulate_overrides: tuple[str, ...] = ()
    seed: int = 0
    # 16 px patches (cellmae/train/presets/demo-camae.yaml): on the 256 px demo screen the patch-8
    # tiny-camae reached sim-truth recall 0.237 in 5 min (755 steps) and took 125 s to embed the screen;
    # the patch-16 model embeds it in ~25 s and, trained for 2200 steps, reached 0.251 (random-init 0.101).
    train_config: str = "demo-camae"
    # It sits on the "predict the mean" plateau (loss ~1.0) for its first few hundred steps and keeps
    # improving after: with a full cosine schedule, 1500 steps gave recall 0.169 and 2200 steps 0.251
    # (docs/demo.md). Batch 64 at lr 3e-3 (fewer, larger steps) did worse.
    steps: int = 2200
    # Opt-in wall-clock guard. Off by default: a guard that fires makes the numbers depend on the
    # machine's load. When it fires the demo warns, and demo.json and the report say so.
    max_train_minutes: float | None = None
    train_overrides: tuple[str, ...] = ()  # extra key=value overrides for cellmae.train
    crop_size: int = 64
    crops_per_field: int = 16
    blocks: str = "all"  # blocks of the trained model to embed ("all", "last", "2,4")
    tile: int = 64
    # Token pooling of the ViTs (trained and random-init alike): the mean over channel x patch tokens, as in
    # the papers. (An earlier "cls" default came from bf16 runs in which the near-constant random-init
    # CLS token was rounded to a few values; in fp32 mean and CLS scored alike, 0.17-0.26 vs 0.23-0.26.)
    pool: str = "mean"
    batch_size: int = 64  # embedding batch
    align: str = "tvn-batch-centered"
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
