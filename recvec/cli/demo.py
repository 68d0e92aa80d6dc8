"""`recvec demo`: evaluate, build and query on the embedded dataset (offline)."""

from __future__ import annotations

import time

import click

from recvec.cli.common import emit_results, emit_table, show_progress, threads_option


@click.command("demo")
@click.option("--data", default="synthetic", show_default=True,
              help="Dataset: 'synthetic' (embedded, offline) or a MovieLens path / s3:// URI.")
@click.option("--out", default="demo-out", show_default=True, help="Where the demo's index artifacts go.")
@click.option("--encoder", default="minilm", show_default=True, help="Text encoder for the text index.")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None, help="S3-compatible endpoint.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@threads_option
def demo_cmd(data, out, encoder, endpoint_url, quiet):
    """Evaluate popularity, ALS and a text model, build ALS and text indexes, and query them."""
    from pathlib import Path

    import numpy as np

    from recvec.engine.data import load_dataset
    from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model
    from recvec.engine.split import leave_last_out
    from recvec.indexes.build import build_artifact, open_index, text_query_vectors
    from recvec.indexes.spec import IndexSpec

    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings)
    click.echo(f"== data: {ds.source} ({ds.format}): {len(ds.ratings):,} ratings, {len(ds.catalog):,} movies; "
               f"train {len(split.train):,} rows, test {len(split.test):,} rows\n")
    fitted, rows = {}, []
    for cfg in (ModelConfig("popular"), ModelConfig("als"), ModelConfig("text", encoder=encoder)):
        t0 = time.perf_counter()
        fitted[cfg.kind] = fit_model(split, ds.catalog, cfg, progress=progress)
        ev = evaluate_model(fitted[cfg.kind], split, k=10)
        r20, n20 = ev.at(20)
        rows.append({**ev.to_dict(), "recall20": r20, "fit_s": time.perf_counter() - t0})
    click.echo("== accuracy (leave-last-positive-out, full ranking, train items excluded)")
    emit_table(rows, [("model", "model", ""), ("recall", "Recall@10", ".4f"), ("ndcg", "NDCG@10", ".4f"),
                      ("recall20", "Recall@20", ".4f"), ("users", "users", ","), ("fit_s", "fit+eval s", ".2f")])

    out = Path(out)
    built = {}
    for kind, spec in (("als", "flat"), ("als", "hnsw"), ("text", "flat")):
        dest = out / f"{kind}-{spec}"
        build_artifact(ds, fitted[kind], IndexSpec.parse(spec), str(dest))
        built[(kind, spec)] = open_index(str(dest))
    click.echo(f"\n== built {len(built)} index artifacts under {out}/: {', '.join(f'{k}-{s}' for k, s in built)}")

    als = built[("als", "flat")]
    pop = fitted["popular"].popularity
    seed_item = split.items.id_of([int(np.argmax(pop))]).tolist()[0]  # the film most users rated: one people know
    hist_rows = split.histories()
    user_row = int(np.argsort([len(h) for h in hist_rows], kind="stable")[len(hist_rows) // 2])  # a typical user
    history = split.items.id_of(hist_rows[user_row]).tolist()
    click.echo(f"\n== similar to {seed_item} {als.title(seed_item)!r}, the most-rated film (ALS, cosine)")
    emit_results(als, {}, als.recommender.similar(seed_item, 5), False)
    shown_hist = history[-5:]
    click.echo(f"\n== recommendations for user {split.users.id_of([user_row]).tolist()[0]}, whose history of "
               f"{len(history)} items is given at query time; its latest {len(shown_hist)}:")
    for i in shown_hist:
        click.echo(f"   {i}  {als.title(i)}")
    click.echo("(ALS fold-in; exact vs HNSW; the history's items are never recommended)")
    for spec in ("flat", "hnsw"):
        click.echo(f"-- {spec}")
        loaded = built[("als", spec)]
        emit_results(loaded, {}, loaded.recommender.recommend(history, 5), False)
    text = built[("text", "flat")]
    click.echo(f"\n== similar to {seed_item} {text.title(seed_item)!r} (text, {encoder})")
    emit_results(text, {}, text.recommender.similar(seed_item, 5), False)
    phrase = "space adventure with robots"
    click.echo(f"\n== free text: {phrase!r} ({encoder})")
    q = text_query_vectors(text.artifact, [phrase])
    emit_results(text, {}, text.recommender.search_vectors(q, 5)[0], False)
    click.echo("\n== empty history -> popularity fallback (scores are the films' train positives)")
    emit_results(als, {}, als.recommender.recommend([], 5), False)
