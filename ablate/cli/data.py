"""`ablate data list|fetch|cache`: which datasets are present, get one (download or offline copy), and
the decoded-dataset cache that lets N workers skip N decodes."""

from __future__ import annotations

import argparse
import shutil

from tabulate import tabulate

from ..datasets import CACHE_ENV, cache_entries, cache_root, data_root, dataset_status, fetch, list_datasets
from . import add_data_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list datasets and fetch one")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="which datasets are present under the data root")
    add_data_dir(ls)
    get = actions.add_parser("fetch", help="download or prepare a dataset")
    get.add_argument("name", choices=[n for n in list_datasets() if n != "synthetic"], metavar="NAME",
                     help=", ".join(n for n in list_datasets() if n != "synthetic"))
    add_data_dir(get)
    get.add_argument("--from", dest="local_copy", metavar="DIR",
                     help="prepare from a folder holding the four idx(.gz) files (mnist, fashion-mnist); "
                          "fashion-mnist looks in Debian's /usr/share/datasets/fashion-mnist by itself")
    cache = actions.add_parser("cache", help="list (or --clear) the decoded-dataset cache")
    add_data_dir(cache)
    cache.add_argument("--clear", action="store_true", help="delete every entry (the next load decodes again)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "cache":
        return show_cache(args)
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


def show_cache(args: argparse.Namespace) -> int:
    """Entries are never deleted by loads (another worker may be reading one): this is how to reclaim space."""
    folder, entries = cache_root(args.data_dir), cache_entries(args.data_dir)
    if folder is None:
        print(f"the decoded-dataset cache is off (${CACHE_ENV})")
        return 0
    if args.clear:
        for entry, _, _ in entries:
            shutil.rmtree(entry, ignore_errors=True)
        for lock in folder.glob(".*.lock"):
            lock.unlink(missing_ok=True)
        print(f"removed {len(entries)} {'entry' if len(entries) == 1 else 'entries'} from {folder}")
        return 0
    print(f"dataset cache: {folder} (${CACHE_ENV} moves it, 'off' disables it)")
    rows = [[name, entry.name, f"{size / 2**20:.1f}"] for entry, size, name in entries]
    print(tabulate(rows, headers=["dataset", "entry", "MiB"], tablefmt="github") if rows else "no entries")
    return 0
