"""``cellmae simulate``: write a synthetic screen with known biology (and optionally a preview)."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae import layout
from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""

    @app.command("simulate")
    def simulate(
        out: Path = typer.Option(Path("screen"), "--out", "-o", help="Output folder (RxRx layout + truth/)."),
        preset: str = typer.Option(
            "demo", "--preset", "-p",
            help="tiny | demo | large | cellpainting-tiny | cellpainting-demo | cellpainting-large | examplefly-tiny | "
            "examplefly-demo (real ExampleFly pixels with planted effects; needs --set base_images=DIR).",
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same bytes."),
        overrides: list[str] = typer.Option(
            [], "--set",
            help="Override a preset parameter, key=value (repeatable), e.g. --set n_genes=50 "
            "--set channels=DNA,ER,RNA,AGP,Mito. See docs/simulate.md for all keys.",
        ),
        workers: int = typer.Option(0, "--workers", "-j", help="Render processes (0: the preset's default)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it holds a different screen."),
        preview: bool = typer.Option(False, "--preview", help="Also write OUT/preview.png (controls vs hits vs batches)."),
        list_presets: bool = typer.Option(False, "--list-presets", help="Print the presets and their parameters, then exit."),
        progress: bool = PROGRESS,
        quiet: bool = QUIET,
        as_json: bool = JSON,
    ) -> None:
        """Simulate a perturbation screen (real gene symbols, groups from HuMAP/Reactome, compounds,
        batch effects) in the RxRx layout with its ground truth, ready for `cellmae shards`."""
        import time

        from rich.console import Console

        from cellmae.data.simulate.presets import PRESETS, check_base_images, parse_override, resolve_spec

        console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
        if list_presets:
            for name in PRESETS:
                spec = resolve_spec(name)
                console.print(f"{name}: {spec}")
            raise typer.Exit()
        try:
            kwargs = dict(parse_override(o) for o in overrides)
            if workers:
                kwargs["workers"] = workers
            check_base_images(preset, resolve_spec(preset, **kwargs))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err

        from cellmae.data.simulate.preview import write_preview
        from cellmae.data.simulate.writer import simulate_screen

        speaker = Speaker(quiet=quiet, as_json=as_json)
        t0 = time.perf_counter()
        root = simulate_screen(out, preset, seed, overwrite=overwrite, progress=progress and not quiet, **kwargs)
        seconds = time.perf_counter() - t0
        png = write_preview(root, root / layout.SCREEN_PREVIEW_FILE) if preview else None
        speaker.summary({"screen": str(root), "preset": preset, "seed": seed, "seconds": round(seconds, 1),
                         "preview": str(png) if png else None},
                        f"wrote {root} (preset {preset}, seed {seed}) in {seconds:.1f} s",
                        *([f"preview: {png}"] if png else []))
