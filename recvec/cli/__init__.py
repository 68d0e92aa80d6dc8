"""recvec command line: thin click commands (flags -> config -> library calls), one module per
command group; adding one is a module and a line below.

Library modules are imported inside the commands so that `recvec --help` answers instantly (no
numpy, FAISS, torch or boto3 at start-up)."""

from __future__ import annotations

import click

from recvec.cli.bench import bench_group
from recvec.cli.build import build_cmd
from recvec.cli.common import RecvecGroup
from recvec.cli.demo import demo_cmd
from recvec.cli.evaluate import eval_cmd
from recvec.cli.query import query_group
from recvec.cli.serve import serve_cmd
from recvec.cli.tune import presets_cmd, tune_cmd


@click.group(cls=RecvecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recvec")
def main():
    """recvec: build FAISS indexes of item vectors (implicit ALS, text encoders), query them with
    user vectors built at query time, and benchmark accuracy and latency on MovieLens."""


for command in (eval_cmd, build_cmd, query_group, demo_cmd, tune_cmd, presets_cmd, bench_group, serve_cmd):
    main.add_command(command)
