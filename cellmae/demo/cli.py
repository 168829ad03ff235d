"""`cellmae demo`: simulate a screen, train a tiny CA-MAE, embed, align, benchmark, report."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae.demo.settings import DemoSettings as _Defaults  # light module: no torch at CLI start-up


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(_Defaults.out, "--out", "-o", help="Run directory (created; a rerun resumes it)."),
        screen: Path | None = typer.Option(None, "--screen", help="Your own screen folder instead of the simulated one."),
        checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Your own model (checkpoint folder or "
                                               "OpenPhenom file) instead of training one."),
        preset: str = typer.Option(_Defaults.preset, "--preset", help="Simulator preset: tiny | demo | large | ..."),
        sim_set: list[str] = typer.Option(list(_Defaults.simulate_overrides), "--sim-set", help="Simulator override key=value for "
                                          "both simulated screens (repeatable; see `cellmae simulate --help`)."),
        seed: int = typer.Option(_Defaults.seed, "--seed", help="Seed of the simulation, training and baselines."),
        steps: int = typer.Option(_Defaults.steps, "--steps", help="Training steps of the CA-MAE."),
        max_train_minutes: float | None = typer.Option(_Defaults.max_train_minutes, "--max-train-minutes",
                                                       help="Optional wall-clock guard: stop training after this many minutes (off by default; "
                                                       "when it fires the numbers depend on the machine's load, and the demo and the report say so)."),
        train_config: str = typer.Option(_Defaults.train_config, "--train-config", help="cellmae.train preset or YAML file."),
        train_set: list[str] = typer.Option([], "--train-set", help="Extra training override key=value (repeatable)."),
        blocks: str = typer.Option(_Defaults.blocks, "--blocks", help="Blocks of the model to embed: all | last | 2,4."),
        pool: str = typer.Option(_Defaults.pool, "--pool", help="Token pooling of the ViT embeddings: mean | cls | "
                                 "channel_concat (CA-MAE: one mean per channel, concatenated)."),
        relationships: list[Path] = typer.Option([], "--relationships", help="Extra relationship CSV or folder "
                                                 "(entity1,entity2), e.g. CORUM/HuMAP/Reactome (repeatable)."),
        wsl: bool = typer.Option(False, "--wsl/--no-wsl", help="Also train and compare a weakly supervised classifier."),
        skip_transfer: bool = typer.Option(False, "--skip-transfer", help="Skip the channel-transfer experiment."),
        transfer_preset: str = typer.Option(_Defaults.transfer_preset, "--transfer-preset",
                                            help="Simulator preset of the 5-channel transfer screen."),
        device: str = typer.Option(_Defaults.device, "--device", help="auto | cpu | cuda | cuda:N."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    ) -> None:
        """Run the whole pipeline and write RUN/report.html (about 10 minutes on 2 idle CPU cores).

        Stages: simulate the demo screen, cut training crops, train a tiny CA-MAE, embed every block with it and with the baselines (random-init of the same architecture, handcrafted features), align with TVN, run every benchmark (recall of the simulated truth, replicate consistency, mAP, block probes), embed a 5-channel Cell-Painting-like screen with the same models (channel transfer), and build the report.

        Rerunning with the same --out resumes: finished stages are reused, a changed option reruns only the stages it affects. Use --screen / --checkpoint / --relationships for your own data.
        """
        from rich.console import Console

        from cellmae.demo.pipeline import run_demo, summary_tables
        from cellmae.demo.settings import DemoSettings

        console = Console()
        settings = DemoSettings(
            out=out, screen=screen, checkpoint=checkpoint, preset=preset, simulate_overrides=tuple(sim_set), seed=seed, steps=steps,
            max_train_minutes=max_train_minutes, train_config=train_config, train_overrides=tuple(train_set),
            blocks=blocks, pool=pool, relationships=tuple(relationships), wsl=wsl, device=device, progress=progress,
            transfer_preset=None if skip_transfer else transfer_preset,
        )
        result = run_demo(settings, console)
        for table in summary_tables(result):
            console.print(table)
        typer.echo(f"report: {result.report}")
