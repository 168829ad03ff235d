"""The report's sections, each built from a loaded run (see load.py) with figures from figures.py."""

from __future__ import annotations

import pandas as pd

from cellmae import layout
from cellmae.data import schema
from cellmae.report import figures, views
from cellmae.report.html import Section, cards_html, esc, figure_html, format_number, paragraph, table_html
from cellmae.report.load import MethodResult, RunContents, read_parquet


def _missing(what: str, hint: str) -> str:
    return f'<p class="empty">{esc(what)} — {esc(hint)}</p>'


def _colors(run: RunContents) -> dict[str, tuple]:
    """Colours keyed by model name, shared by the main run and its transfer run."""
    models = [t.model for t in run.training] + [m.model for m in run.methods]
    if run.transfer is not None:
        models += [m.model for m in run.transfer.methods]
    return figures.method_colors(list(dict.fromkeys(models)))


def recall_table(methods: list[MethodResult]) -> pd.DataFrame:
    """Long recall rows of all methods (method, database, recall[, null])."""
    frames = [views.recall_long(m) for m in methods]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["method", "database", "recall"])


def recall_pivot(long: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, databases as columns, plus their mean."""
    if long.empty:
        return long
    piv = long.pivot_table(index="method", columns="database", values="recall", sort=False)
    piv["mean"] = piv.mean(axis=1)
    return piv.reset_index()


def overview_section(run: RunContents) -> Section:
    sec = Section("Overview")
    long = recall_table(run.methods)
    cards = []
    if not long.empty:
        for method, grp in long.groupby("method", sort=False):
            cards.append((f"mean recall · {method}", format_number(float(grp["recall"].mean()), 3)))
    if run.transfer is not None:
        tl = recall_table(run.transfer.methods)
        for method, grp in tl.groupby("method", sort=False):
            cards.append((f"transfer mean recall · {method}", format_number(float(grp["recall"].mean()), 3)))
    if cards:
        sec.parts.append(cards_html(cards))
    facts = []
    if run.screen_channels:
        facts.append(("screen channels", ", ".join(run.screen_channels)))
    if run.screen_wells is not None:
        facts.append(("screen wells", run.screen_wells))
    facts.append(("methods", ", ".join(m.label for m in run.methods) or "none"))
    if run.transfer is not None:
        facts.append(("transfer methods", ", ".join(m.label for m in run.transfer.methods) or "none"))
        if run.transfer.screen_channels:
            facts.append(("transfer screen channels", ", ".join(run.transfer.screen_channels)))
    sec.parts.append(table_html(pd.DataFrame(facts, columns=["item", "value"]).astype({"value": object})))
    sec.parts.extend(_demo_parts(run.demo_info))
    for m in run.methods:
        for stage, why in m.incomplete.items():
            sec.parts.append(f'<p class="warn">Incomplete {esc(stage)} output of {esc(m.label)}, not shown: '
                             f"{esc(why)}</p>")
    missing = [m.model for m in run.methods if m.bench_dir is None]
    if missing:
        sec.parts.append(f'<p class="warn">No bench outputs for: {esc(", ".join(missing))}. '
                         "Run `cellmae bench` on their map folders to include them.</p>")
    return sec


def _demo_parts(info: dict | None) -> list[str]:
    """Stage timings and settings of a `cellmae demo` run (RUN/demo.json), folded away."""
    if not info:
        return []
    parts = []
    for name, detail in (info.get("training") or {}).items():
        if detail.get("time_guard_fired"):
            parts.append(f"<p class='warn'>{esc(name)} was stopped by the wall-clock guard (--max-train-minutes) at "
                         f"step {esc(str(detail.get('steps')))} of {esc(str(detail.get('steps_planned')))}: the "
                         "numbers of this run depend on the machine's load and are not the fixed-step result.</p>")
    secs = info.get("stage_seconds") or {}
    if secs:
        reused = set(info.get("stages_reused") or [])
        rows = [(k, float(v), "reused" if k in reused else "ran") for k, v in secs.items()]
        table = pd.DataFrame(rows, columns=["stage", "seconds", "status"])
        parts.append(f"<details><summary>Demo stages ({esc(format_number(float(sum(v for k, v, st in rows if st == 'ran')), 3))} s "
                     f"this run)</summary>{table_html(table)}</details>")
    settings = views.flatten_summary(info.get("settings") or {})
    if settings:
        table = pd.DataFrame(list(settings.items()), columns=["setting", "value"]).astype({"value": object})
        parts.append(f"<details><summary>Demo settings</summary>{table_html(table)}</details>")
    return parts


def training_section(run: RunContents) -> Section:
    sec = Section("Training", intro="Masked-autoencoder training: loss, learning rate and throughput per step, "
                  "and reconstructions (input, masked input, reconstruction per channel) at the first and last "
                  "logged step.")
    metrics = {t.model: t.metrics for t in run.training if t.metrics is not None and "step" in t.metrics.columns}
    if metrics:
        sec.parts.append(figure_html(figures.training_curves(metrics, _colors(run)), "Training curves (thick line: running mean)."))
    else:
        sec.parts.append(_missing("No metrics.csv found under train/", "run `cellmae train` to produce one."))
    for t in run.training:
        if not t.recon_pngs:
            continue
        sec.parts.append(f"<h3>Reconstructions · {esc(t.model)}</h3>")
        shown = [t.recon_pngs[0], t.recon_pngs[-1]] if len(t.recon_pngs) > 1 else t.recon_pngs
        figs = "".join(figure_html(png.read_bytes(), f"{t.model}: {png.stem}") for png in shown)
        sec.parts.append(f'<div class="row">{figs}</div>')
    summaries = [{"model": t.model, **views.flatten_summary(t.summary)} for t in run.training if t.summary]
    if summaries:
        sec.parts.append(table_html(pd.DataFrame(summaries), caption="Training summary (train/<model>/summary.json)."))
    return sec


def projection_section(run: RunContents) -> Section:
    sec = Section("Embeddings", intro="2-D PCA of well embeddings at each method's chosen block: coloured by batch "
                  "(experiment) before and after alignment, and by complex / group after alignment.")
    drawn = 0
    for m in run.methods:
        before = read_parquet(m.embed_dir) if m.embed_dir is not None else None
        after = read_parquet(m.map_dir / layout.MAP_ALIGNED_FILE) if m.map_dir is not None else None
        panels = []
        if before is not None and schema.feature_columns(before):
            xy, kept = views.pca_2d(before)
            panels.append((xy, kept[schema.EXPERIMENT].astype(str).tolist(), "batch · before alignment", None))
        if after is not None and schema.feature_columns(after):
            xy, kept = views.pca_2d(after)
            panels.append((xy, kept[schema.EXPERIMENT].astype(str).tolist(), "batch · after alignment", None))
            panels.append((xy, views.group_labels(kept, run.truth_genes).tolist(), "complex / group · after alignment",
                           views.CONTROL_LABEL))
        if panels:
            sec.parts.append(f"<h3>{esc(m.label)}</h3>")
            sec.parts.append(figure_html(figures.projections(panels), f"{m.label}: PCA of well embeddings"))
            drawn += 1
    if not drawn:
        sec.parts.append(_missing("No well embeddings found", "run `cellmae embed` and `cellmae map`."))
    return sec


def recall_section(run: RunContents) -> Section:
    sec = Section("Relationship recall", intro="Fraction of known relationships whose cosine similarity falls in "
                  "the extreme tails of the null distribution, per database and method (higher is better; a map without "
                  "signal scores about 0.10 at the 5%/95% tails).")
    long = recall_table(run.methods)
    if long.empty:
        sec.parts.append(_missing("No recall.csv found under bench/", "run `cellmae bench`."))
        return sec
    sec.parts.append(figure_html(figures.recall_bars(long, colors=_colors(run)), "Recall per database and method."))
    piv = recall_pivot(long)
    sec.parts.append(table_html(piv, caption="Recall per method (rows) and database (columns).",
                                highlight_max=[c for c in piv.columns if c != "method"]))
    return sec


def probe_section(run: RunContents) -> Section:
    sec = Section("Block probes", intro="Probe metric of the features of each transformer block, on proxy tasks "
                  "held out from the evaluation (solid); the star marks the block chosen for the map (best_block.json). "
                  "Dashed: the evaluation's recall per block, shown for comparison and never used for the choice.")
    curves = {}
    for m in run.methods:
        c = views.probe_curve(m)
        if c is not None and len(c[0]) > 0:
            curves[m.model] = c
    if not curves:
        sec.parts.append(_missing("No probes.csv found under bench/<model>/", "run the block probes in `cellmae bench`."))
        return sec
    sec.parts.append(figure_html(figures.probe_curves(curves, _colors(run)), "Probe metric per block."))
    for m in run.methods:
        if m.model not in curves:
            continue
        chosen = curves[m.model][2]
        table = views.probe_table(m)
        table = curves[m.model][0] if table is None else table
        protocol = (m.best_block or {}).get("protocol") or {}
        # the probes' screen when it is not the evaluated one (`cellmae bench --probe-map`): its maps' last folders
        where = f" · chosen on a proxy screen ({'/'.join(str(protocol['probe_screen']).split('/')[-3:])})" \
            if protocol.get("probe_screen") else ""
        sec.parts.append(table_html(table, caption=f"{m.model} · chosen block {chosen if chosen is not None else '–'}{where}"))
    return sec


def heatmap_section(run: RunContents) -> Section:
    sec = Section("Best-recalled complexes", intro="Cosine similarity of aggregated perturbation profiles for the "
                  "complexes whose members are most alike: the first method, and the method with the highest "
                  "mean recall when that is another one.")
    long = recall_table(run.methods)
    best = long.groupby("method", sort=False)["recall"].mean().idxmax() if not long.empty else None
    shown = [m for i, m in enumerate(run.methods) if m.map_dir is not None and (i == 0 or m.label == best)]
    for m in shown:
        agg = read_parquet(m.map_dir / layout.MAP_AGGREGATED_FILE)
        block = views.best_group_block(agg, run.truth_genes) if agg is not None else None
        if block is None:
            continue
        sim, names, groups = block
        sec.parts.append(figure_html(figures.similarity_heatmap(sim, names, groups, f"{m.label}: top complexes"),
                                     f"{m.label}: cosine similarity of perturbation profiles, grouped by complex."))
    if not sec.parts:
        sec.parts.append(_missing("No aggregated profiles with known groups",
                                  "needs map/<model>/<block>/aggregated.parquet and screen/truth/genes.csv."))
    else:
        sec.parts = [f'<div class="row">{"".join(sec.parts)}</div>']
    return sec


def consistency_section(run: RunContents) -> Section:
    sec = Section("Replicate consistency", intro="Distribution of per-perturbation replicate consistency "
                  "(similarity of a perturbation's replicate wells), per method.")
    vals, nulls, xlabel = {}, {}, ""
    for m in run.methods:
        v, n, col = views.consistency_values(m)
        if len(v):
            vals[m.label] = v
            xlabel = xlabel or col
            if n is not None:
                nulls[m.label] = n
    if not vals:
        sec.parts.append(_missing("No consistency.csv found under bench/", "run `cellmae bench`."))
        return sec
    sec.parts.append(figure_html(figures.distributions(vals, xlabel=xlabel, title="Replicate consistency",
                                                       nulls=nulls or None, colors=_colors(run)), "Replicate consistency per method."))
    return sec


def transfer_section(run: RunContents) -> Section | None:
    if run.transfer is None:
        return None
    t = run.transfer
    chans = ", ".join(t.screen_channels) if t.screen_channels else "its channels"
    sec = Section("Channel transfer", intro=f"The models applied unchanged to a second screen with {chans}: a "
                  "channel-agnostic model embeds channels it never saw together in training.")
    long = recall_table(t.methods)
    if long.empty:
        sec.parts.append(_missing("No recall.csv under transfer/bench/", "run the transfer benchmarks."))
        return sec
    sec.parts.append(figure_html(figures.recall_bars(long, title="Recall on the transfer screen", colors=_colors(run)),
                                 "Recall on the transfer screen per database and method."))
    piv = recall_pivot(long)
    sec.parts.append(table_html(piv, caption="Transfer recall.", highlight_max=[c for c in piv.columns if c != "method"]))
    return sec


def numbers_section(run: RunContents) -> Section:
    sec = Section("Table of numbers", intro="Every scalar of each method's summary.json (bench stage).")
    rows = []
    for prefix, r in (("", run), ("transfer: ", run.transfer)):
        if r is None:
            continue
        for m in r.methods:
            if m.summary:
                flat = {k: v for k, v in views.flatten_summary(m.summary).items() if k not in ("schema", "map_dir")}
                rows.append({"method": prefix + m.label, **flat})
    if not rows:
        sec.parts.append(_missing("No summary.json found under bench/", "run `cellmae bench`."))
        return sec
    df = pd.DataFrame(rows)
    # One row per metric reads better than dozens of columns when there are few methods.
    table = df.set_index("method").T.reset_index().rename(columns={"index": "metric"})
    table.columns = [str(c) for c in table.columns]
    sec.parts.append(table_html(table.astype(object).where(table.notna(), float("nan")), max_rows=500))
    sec.parts.append(paragraph(f"{len(rows)} method(s), {len(table)} metric(s)."))
    return sec


def all_sections(run: RunContents) -> list[Section]:
    """The report's sections in reading order (a transfer section only when the run has one)."""
    builders = (overview_section, training_section, projection_section, recall_section, probe_section,
                heatmap_section, consistency_section, transfer_section, numbers_section)
    return [s for s in (b(run) for b in builders) if s is not None]
