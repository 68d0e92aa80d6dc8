"""`recvec query similar|user|text`: answers from an index artifact."""

from __future__ import annotations

import click

from recvec.cli.common import (
    ID,
    ID_HELP,
    FiniteFloat,
    RecvecGroup,
    dataset_flags,
    emit_results,
    query_options,
    query_params,
    resolve_id,
)


@click.group("query", cls=RecvecGroup)
def query_group():
    """Query an index artifact: similar items, recommendations for a history, free text."""


@query_group.command("similar")
@query_options
@click.option("--item", "item_text", type=ID, required=True, help=f"External item id. {ID_HELP}")
def query_similar(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, item_text):
    """Items most similar to one item (cosine), the item itself excluded. ALS vectors: answered by the
    artifact's similar index when it was built with --similar-index (--ef-search applies to it), else
    by an exact scan of every item."""
    from recvec.indexes.build import open_index

    loaded = open_index(index_path, endpoint_url=endpoint_url)
    item_id = resolve_id(item_text, loaded.recommender.items.string_ids, "--item")
    recs = loaded.recommender.similar(item_id, k, **query_params(ef_search, nprobe))
    emit_results(loaded, {"type": "similar", "item": item_id, "title": loaded.title(item_id), "k": k}, recs, as_json)


def parse_id_list(text: str, strings: bool = False) -> list:
    """Comma-separated item ids (``--items``), empty parts skipped: ints for integer ids
    (click.BadParameter for a part that is not an integer within int64), else the stripped texts."""
    return [resolve_id(part.strip(), strings, "--items") for part in text.split(",") if part.strip()]


@query_group.command("user")
@query_options
@click.option("--items", "items_text", default=None,
              help=f"The user's history: comma-separated item ids, oldest first. {ID_HELP}")
@click.option("--data", default=None,
              help="Dataset to take the history of --user from (its train split): as `recvec eval --data`.")
@click.option("--user", "user_text", type=ID, default=None,
              help="User id in --data (an integer when the data's user ids are, else the text).")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Positives threshold for --data.")
@click.option("--skip-unknown", is_flag=True, help="Skip history ids the index does not know instead of failing.")
@dataset_flags(item_table=False)
def query_user(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, items_text, data, user_text, threshold,
               skip_unknown):
    """Recommendations from a history given at query time (the history's items are excluded)."""
    from recvec.indexes.build import open_index

    if (items_text is None) == (user_text is None):
        raise click.UsageError("give either --items ID,ID,... or --data PATH --user ID")
    if user_text is not None:
        if data is None:
            raise click.UsageError("--user needs --data PATH to read the user's history from")
        from recvec.engine.data import load_dataset
        from recvec.engine.split import leave_last_out, user_history

        ratings = load_dataset(data, endpoint_url=endpoint_url).ratings
        user_id = resolve_id(user_text, ratings.user_labels is not None, "--user")
        history = user_history(leave_last_out(ratings, threshold), ratings, user_id).tolist()
        query = {"type": "user", "user": user_id, "history_len": len(history), "k": k}
        loaded = open_index(index_path, endpoint_url=endpoint_url)
    else:
        loaded = open_index(index_path, endpoint_url=endpoint_url)
        history = parse_id_list(items_text, loaded.recommender.items.string_ids)
        query = {"type": "user", "items": history, "k": k}
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
