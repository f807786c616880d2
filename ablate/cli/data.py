"""`ablate data list|fetch`: which datasets are present, and get one (download or offline copy)."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from ..data import DATA_ENV, data_root, dataset_status, fetch, list_datasets


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list datasets and fetch one")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="which datasets are present under the data root")
    ls.add_argument("--data-dir", help=f"data root (default: ${DATA_ENV}, else ./data)")
    get = actions.add_parser("fetch", help="download or prepare a dataset")
    get.add_argument("name", choices=[n for n in list_datasets() if n != "synthetic"], metavar="NAME",
                     help=", ".join(n for n in list_datasets() if n != "synthetic"))
    get.add_argument("--data-dir", help=f"data root (default: ${DATA_ENV}, else ./data)")
    get.add_argument("--from", dest="local_copy", metavar="DIR",
                     help="prepare from a folder holding the four idx(.gz) files (mnist, fashion-mnist); "
                          "fashion-mnist looks in Debian's /usr/share/datasets/fashion-mnist by itself")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        where = fetch(args.name, args.data_dir, local_copy=args.local_copy)
        print(f"{args.name}: ready in {where}")
        return 0
    rows = [[name, "yes" if present else "no", folder, "" if present else how]
            for name, present, folder, how in dataset_status(args.data_dir)]
    print(f"data root: {data_root(args.data_dir)}")
    print(tabulate(rows, headers=["dataset", "present", "folder", "how to get it"], tablefmt="github",
                   maxcolwidths=[None, None, 40, 70]))
    return 0
