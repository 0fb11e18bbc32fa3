"""`clipblip data ...`: generate the Shapes world, pack any dataset into webdataset shards."""

from __future__ import annotations


def add_parsers(sub) -> None:
    from . import pack, shapes_io

    data = sub.add_parser("data", help="generate the Shapes world, pack datasets into webdataset shards")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("shapes", help="write a split of the generated Shapes world (images + JSONL)")
    shapes_io.add_args(p)
    p.set_defaults(run=shapes_io.run)
    p = dsub.add_parser("pack", help="write any readable dataset as webdataset tar shards")
    pack.add_args(p)
    p.set_defaults(run=pack.run)
