"""What a demo run is made of: one dataclass of every knob, with the defaults `cellmae demo` uses.

The defaults are sized for the ~10 minute CPU budget of the README's main command on 2 cores:
the ``demo`` simulated screen, the ``demo-camae`` training preset for a fixed number of steps (a
compute budget, so a busy machine gives the same numbers, only later), every block of the tiny
encoder embedded, TVN alignment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

MODEL = "camae"  # the trained model's name under RUN/train, RUN/embed, ... (DESIGN.md run layout)

# The proxy screen on which the block probes choose each model's block (ViTally: block selection on tasks
# separate from the evaluation). Its own seed, and genes from functional groups the evaluation screen does
# not use; no compounds, two wells per gene per experiment so that held-out-plate folds have replicates;
# half the evaluation screen's genes, to stay cheap (its cost is in docs/demo.md).
PROXY_SEED_OFFSET = 1
PROXY_GENE_SHARE = 0.5
PROXY_OVERRIDES: dict = {"n_compounds": 0, "gene_replicates": 2}


@dataclass
class DemoSettings:
    """Every knob of a demo run; ``stage_key`` hashes the ones each stage's output depends on."""

    out: Path = Path("runs/demo")
    screen: Path | None = None  # your own screen (RxRx / Cell Painting layout) instead of the simulated one
    checkpoint: Path | None = None  # your own model (checkpoint dir or OpenPhenom file) instead of training
    preset: str = "demo"  # simulator preset when no screen is given
    # Simulator overrides (key=value) for both screens. None by default: smaller fields hold too few cells
    # per well for a few-minute model (measured in docs/demo.md, "Choosing the demo model").
    simulate_overrides: tuple[str, ...] = ()
    seed: int = 0
    # 16 px patches (cellmae/train/presets/demo-camae.yaml): more steps per minute and a faster embedding
    # than patch 8, at least as good features (docs/demo.md, "Choosing the demo model").
    train_config: str = "demo-camae"
    # The model leaves the "predict the mean" plateau only after a few hundred steps and keeps improving;
    # the step count and the alternatives tried are in docs/demo.md, "Choosing the demo model".
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
    # the papers; a random-init CLS token is near-constant and bf16 rounds it (docs/embed.md, "bf16 on CPU").
    pool: str = "mean"
    batch_size: int = 64  # embedding batch
    align: str = "tvn-batch-centered"
    relationships: tuple[Path, ...] = ()  # extra relationship CSVs / folders (entity1,entity2)
    baselines: tuple[str, ...] = ("random-init", "handcrafted")
    wsl: bool = False  # also train and compare a weakly supervised classifier
    transfer_preset: str | None = "cellpainting-demo"  # None skips the channel-transfer experiment
    # Choose blocks on a simulated proxy screen (simulated evaluation screens only); False probes the
    # evaluation screen's held-out perturbations instead (on the demo screen only its compounds).
    proxy: bool = True
    device: str = "auto"
    workers: int | None = None  # embedding decode workers (None: the embed stage's default)
    progress: bool = True

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

    def proxy_kwargs(self, evaluation_genes: list[str]) -> dict:
        """Simulator overrides of the proxy screen: the user's, then the proxy's own, excluding
        ``evaluation_genes`` (and their groups)."""
        from cellmae.data.simulate.presets import resolve_spec

        user = self.simulate_kwargs()
        n_genes = max(8, int(round(PROXY_GENE_SHARE * resolve_spec(self.preset, **user).n_genes)))
        return {**user, **PROXY_OVERRIDES, "n_genes": n_genes, "exclude_genes": tuple(sorted(evaluation_genes))}

    def record(self) -> dict:
        """JSON-able settings (saved to RUN/demo.json and shown in the report)."""
        rec = asdict(self)
        return json.loads(json.dumps(rec, default=str))

    def stage_key(self, *names: str, upstream: str = "") -> str:
        """A short hash of the named settings plus the upstream stage's key: equal keys mean reusable output."""
        rec = self.record()
        payload = json.dumps({"upstream": upstream, **{n: rec[n] for n in names}}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
