"""``python -m experiments [NAME] [--quick] [--seed N] [--out DIR]``.

With no NAME: the showcase, the quick profile of every experiment in SHOWCASE, a summary table in the terminal,
``OUT/report.md`` and one ``OUT/NAME.json`` per experiment.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import time

from experiments import _common

SHOWCASE: tuple[str, ...] = ()
OTHERS: tuple[str, ...] = ("flax_classifier",)


def run_one(name: str, profile: str, seed: int, out: pathlib.Path) -> dict:
    module = importlib.import_module(f"experiments.{name}")
    start = time.perf_counter()
    result = module.run(profile, seed, out)
    result.setdefault("config", {})["seconds"] = round(time.perf_counter() - start, 1)
    _common.write_json(result, out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=SHOWCASE + OTHERS, help="one experiment (default: the showcase)")
    parser.add_argument("--quick", action="store_true", help="the quick profile (the showcase always uses it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results"))
    args = parser.parse_args(argv)
    if args.name is None:
        raise SystemExit("the showcase has no experiments yet")
    result = run_one(args.name, "quick" if args.quick else "full", args.seed, args.out)
    print(_common.markdown_table(result["rows"]))
    print(f"wrote {args.out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
