"""`recvec serve`: an HTTP service answering from an index artifact (recvec/serve/)."""

from __future__ import annotations

import os

import click

from recvec.cli.common import FiniteFloat, count

_LIMITS = {"max_k": 1000, "max_history": 10_000, "max_batch": 256, "max_body_bytes": 1 << 20}


@click.command("serve")
@click.option("--index", "index_path", required=True, help="Artifact directory or s3://bucket/prefix (reloads read it again).")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None, help="S3-compatible endpoint for s3:// artifacts.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).")
@click.option("--port", type=count(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free one; the address is printed).")
@click.option("--workers", type=count(1, 64), default=1, show_default=True,
              help="Worker processes, each with its own copy of the artifact (they follow reloads by watching the "
                   "manifest).")
@click.option("--threads", type=count(0, 1024), default=0, show_default=True,
              help="Search threads per worker (0: $RECVEC_THREADS, else the cores this process may use).")
@click.option("--watch", "watch_s", type=FiniteFloat(min=0, max=86400), default=0.0, show_default=True,
              help="Check the artifact's manifest every S seconds and reload when it changes (0: only on POST "
                   "/admin/reload; 2 with --workers > 1).")
@click.option("--max-k", type=count(1), default=_LIMITS["max_k"], show_default=True, help="Largest k a request may ask.")
@click.option("--max-history", type=count(1), default=_LIMITS["max_history"], show_default=True,
              help="Most ids in one history (and in exclude).")
@click.option("--max-batch", type=count(1), default=_LIMITS["max_batch"], show_default=True,
              help="Most histories in one batch request.")
@click.option("--max-body-bytes", type=count(1), default=_LIMITS["max_body_bytes"], show_default=True,
              help="Largest request body (413 beyond).")
@click.option("--shutdown-timeout", type=FiniteFloat(min=0, max=3600), default=10.0, show_default=True,
              help="Seconds SIGTERM waits for requests in flight.")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@click.option("--inline/--no-inline", "inline_single", default=True, show_default=True,
              help="Answer a lone single-history request on the event loop's thread (no hand-off to a search "
                   "thread); concurrent requests always go to the search threads.")
@click.option("--admin-token", envvar="RECVEC_ADMIN_TOKEN", show_envvar=True, default=None,
              help="Require 'Authorization: Bearer TOKEN' on POST /admin/reload (set it in the environment: a flag "
                   "is visible to other users in ps).")
def serve_cmd(index_path, endpoint_url, host, port, workers, threads, watch_s, max_k, max_history, max_batch,
              max_body_bytes, shutdown_timeout, access_log, log_level, inline_single, admin_token):
    """Serve recommendations over HTTP from an index artifact.

    POST/GET /recommend, GET /similar/{item_id}, POST /search (text indexes), GET /healthz, /readyz,
    /metrics (Prometheus), /info, POST /admin/reload (load the artifact again and swap it in; a bad one
    is refused and the old one keeps serving). OpenAPI docs at /docs. Stops gracefully on SIGTERM."""
    from recvec.serve.config import TOKEN_ENV, Limits, ServeConfig
    from recvec.serve.holder import IndexHolder
    from recvec.serve.server import serve

    config = ServeConfig(index=index_path, endpoint_url=endpoint_url, host=host, port=port, workers=workers,
                         threads=threads, watch_s=watch_s, shutdown_timeout_s=shutdown_timeout, access_log=access_log,
                         log_level=log_level, inline_single=inline_single,
                         limits=Limits(max_k=max_k, max_history=max_history, max_batch=max_batch,
                                       max_body_bytes=max_body_bytes))
    if admin_token:
        os.environ[TOKEN_ENV] = admin_token  # the application (and every worker) reads it from there
    elif host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"recvec serve: warning: listening on {host} without --admin-token / ${TOKEN_ENV}: anyone who can "
                   "reach it may POST /admin/reload", err=True)
    holder = IndexHolder(index_path, endpoint_url)
    snap = holder.load()  # a missing or corrupt artifact ends here: Error: ..., exit 2
    click.echo(f"recvec serve: loaded {index_path}: {snap.loaded.artifact.model_kind} vectors, "
               f"{len(snap.loaded.recommender.items):,} items, version {snap.version} ({snap.load_s:.2f} s)", err=True)

    watching = f", watching the manifest every {config.watch_interval_s:g} s" if config.watch_interval_s else ""

    def announce(url: str) -> None:
        click.echo(f"recvec serve: listening on {url} (workers {workers}, search threads {config.search_threads}"
                   f"{watching}); docs at {url}/docs", err=True)

    serve(config, holder, announce=announce)
    click.echo("recvec serve: stopped", err=True)
