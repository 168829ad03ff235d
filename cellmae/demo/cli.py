"""`cellmae demo`: simulate a screen, train a tiny CA-MAE, embed, align, benchmark, report."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae.demo.settings import DemoSettings as _Defaults  # light module: no torch at CLI start-up
from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``scaling-study`` (an experiment on top of the stages) to ``app``."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(_Defaults.out, "--out", "-o", help="Run directory (created; a rerun resumes it)."),
        screen: Path | None = typer.Argument(None, help="Your own screen folder (default: a simulated one)."),
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
        skip_proxy: bool = typer.Option(False, "--skip-proxy", help="Choose blocks on the evaluation screen's held-out "
                                        "perturbations instead of a separate simulated proxy screen."),
        transfer_preset: str = typer.Option(_Defaults.transfer_preset, "--transfer-preset",
                                            help="Simulator preset of the 5-channel transfer screen."),
        device: str = typer.Option(_Defaults.device, "--device", help="auto | cpu | cuda | cuda:N."),
        progress: bool = PROGRESS,
        quiet: bool = QUIET,
        as_json: bool = JSON,
    ) -> None:
        """Run the whole pipeline and write RUN/report.html (about 10 minutes on 2 idle CPU cores).

        Stages: simulate the demo screen and a small proxy screen (other genes, its own seed) on which the block probes choose each model's block, cut training crops, train a tiny CA-MAE, embed every block with it and with the baselines (random-init of the same architecture, handcrafted features), align with TVN, run every benchmark (recall of the simulated truth, replicate consistency, mAP, block probes), embed a 5-channel Cell-Painting-like screen with the same models (channel transfer), and build the report.

        Rerunning with the same --out resumes: finished stages are reused, a changed option reruns only the stages it affects. Give a SCREEN folder, --checkpoint and --relationships for your own data.
        """
        from rich.console import Console

        from cellmae.demo.pipeline import run_demo, summary_tables
        from cellmae.demo.settings import DemoSettings

        console = Console(stderr=as_json, quiet=quiet)  # stdout stays clean for --json
        settings = DemoSettings(
            out=out, screen=screen, checkpoint=checkpoint, preset=preset, simulate_overrides=tuple(sim_set), seed=seed, steps=steps,
            max_train_minutes=max_train_minutes, train_config=train_config, train_overrides=tuple(train_set),
            blocks=blocks, pool=pool, relationships=tuple(relationships), wsl=wsl, device=device,
            progress=progress and not quiet,
            transfer_preset=None if skip_transfer else transfer_preset, proxy=not skip_proxy,
        )
        result = run_demo(settings, console)
        if not as_json:
            for table in summary_tables(result):
                console.print(table)
        Speaker(quiet=quiet, as_json=as_json).summary(
            {"report": str(result.report), "seconds": round(result.seconds, 1), "headline": result.headline,
             "stages": [{"name": r.name, "status": r.status, "seconds": round(r.seconds, 1)} for r in result.stages]},
            f"report: {result.report}")

    @app.command("scaling-study")
    def scaling_study(
        shards: Path = typer.Argument(..., help="Shard folder (or screen folder) to train on."),
        out: Path = typer.Option(..., "--out", "-o", help="Study folder: one run per grid cell + scaling.csv/png."),
        config: str = typer.Option("tiny-camae", "--config", "-c", help="Base preset or YAML file."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                            help="Config override for every job (repeatable)."),
        models: str = typer.Option(..., "--models", help="Comma-separated model presets (the model-size axis)."),
        fractions: str = typer.Option("1.0", "--fractions", help="Comma-separated data fractions (0, 1]."),
        steps: str = typer.Option("", "--steps", help="Comma-separated training lengths (the compute axis), "
                                  "e.g. 300,1000,2200; each job has its own full schedule. Empty: the config's."),
        bench: Path = typer.Option(None, "--bench", help="Folder with bench/<job>/**/summary.json to fill recall."),
        eval_screen: Path = typer.Option(None, "--eval-screen", help="Screen folder with truth/: embed, map "
                                         "and bench every finished job on it, with the random-init and handcrafted baselines."),
        variants: list[str] = typer.Option([], "--variant", help="With --eval-screen: also evaluate under this embedding "
                                           "variant, KEY=VALUE[,...] with KEY pool | image_stats | align (repeatable)."),
        variant_jobs: str = typer.Option("", "--variant-jobs", help="Comma-separated jobs the --variant evaluations "
                                         "cover (default: every job)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the baselines and benchmarks with --eval-screen."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="Reuse finished jobs, resume killed ones."),
        quiet: bool = QUIET,
        as_json: bool = JSON,
    ) -> None:
        """Train a grid of model sizes x data sizes (one subprocess per job) and plot loss vs compute."""
        from cellmae.demo.scaling import run_scaling_study
        from cellmae.layout import SCALING_PLOT_FILE, SCALING_TABLE_FILE

        table = run_scaling_study(config, shards, out, models=[m.strip() for m in models.split(",") if m.strip()],
                                  fractions=[float(f) for f in fractions.split(",")],
                                  steps=[int(n) for n in steps.split(",") if n.strip()] or None, overrides=overrides,
                                  bench_dir=bench, screen=eval_screen, variants=variants, seed=seed, resume=resume,
                                  variant_jobs=[j.strip() for j in variant_jobs.split(",") if j.strip()] or None)
        Speaker(quiet=quiet, as_json=as_json).summary(
            {"table": str(out / SCALING_TABLE_FILE), "plot": str(out / SCALING_PLOT_FILE),
             "jobs": table.to_dict(orient="records")},
            table.to_string(index=False), f"wrote {out / SCALING_TABLE_FILE} and {out / SCALING_PLOT_FILE}")
