"""`recvec query similar|user|text`: answers from an index artifact."""

from __future__ import annotations

import click

from recvec.cli.common import (
    ID,
    FiniteFloat,
    RecvecGroup,
    emit_results,
    query_options,
    query_params,
)
from recvec.errors import shown


@click.group("query", cls=RecvecGroup)
def query_group():
    """Query an index artifact: similar items, recommendations for a history, free text."""


@query_group.command("similar")
@query_options
@click.option("--item", "item_id", type=ID, required=True, help="External item (movie) id.")
def query_similar(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, item_id):
    """Items most similar to one item (cosine), the item itself excluded."""
    from recvec.indexes.build import open_index

    loaded = open_index(index_path, endpoint_url=endpoint_url)
    recs = loaded.recommender.similar(item_id, k, **query_params(ef_search, nprobe))
    emit_results(loaded, {"type": "similar", "item": item_id, "title": loaded.title(item_id), "k": k}, recs, as_json)


def parse_id_list(text: str) -> list[int]:
    """Comma-separated item ids (``--items``) as a list of ints, empty parts skipped; click.BadParameter
    for a part that is not an integer or is outside the int64 range."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise click.BadParameter(f"{shown(part)} is not an integer id", param_hint="--items") from None
        if not ID.min <= value <= ID.max:
            raise click.BadParameter(f"{shown(part)} is outside the int64 range of item ids", param_hint="--items")
        out.append(value)
    return out


@query_group.command("user")
@query_options
@click.option("--items", "items_text", default=None, help="The user's history: comma-separated item ids, oldest first.")
@click.option("--data", default=None, help="Dataset to take the history of --user from (its train split).")
@click.option("--user", "user_id", type=ID, default=None, help="User id in --data.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Positives threshold for --data.")
@click.option("--skip-unknown", is_flag=True, help="Skip history ids the index does not know instead of failing.")
def query_user(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, items_text, data, user_id, threshold,
               skip_unknown):
    """Recommendations from a history given at query time (the history's items are excluded)."""
    from recvec.indexes.build import open_index

    if (items_text is None) == (user_id is None):
        raise click.UsageError("give either --items ID,ID,... or --data PATH --user ID")
    if user_id is not None:
        if data is None:
            raise click.UsageError("--user needs --data PATH to read the user's history from")
        from recvec.engine.data import load_dataset
        from recvec.engine.split import leave_last_out, user_history

        ratings = load_dataset(data, endpoint_url=endpoint_url).ratings
        history = user_history(leave_last_out(ratings, threshold), ratings, user_id).tolist()
        query = {"type": "user", "user": user_id, "history_len": len(history), "k": k}
    else:
        history = parse_id_list(items_text)
        query = {"type": "user", "items": history, "k": k}
    loaded = open_index(index_path, endpoint_url=endpoint_url)
    recs = loaded.recommender.recommend(history, k, unknown="skip" if skip_unknown else "error",
                                        **query_params(ef_search, nprobe))
    emit_results(loaded, query, recs, as_json)


@query_group.command("text")
@query_options
@click.argument("text")
def query_text(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, text):
    """Items nearest to a free-text query (text indexes only)."""
    from recvec.indexes.build import open_index, text_query_vectors

    if not text.strip():
        raise click.BadParameter("the query text is empty", param_hint="TEXT")
    loaded = open_index(index_path, endpoint_url=endpoint_url)
    q = text_query_vectors(loaded.artifact, [text])
    recs = loaded.recommender.search_vectors(q, k, **query_params(ef_search, nprobe))[0]
    emit_results(loaded, {"type": "text", "text": text, "k": k}, recs, as_json)
