"""``python -m experiments [NAME] [--quick | --profile P] [--seed N] [--out DIR] [--fresh]``.

With no NAME: the showcase, the quick profile of every experiment in SHOWCASE, with a summary table in the
terminal, ``OUT/report.md`` (tables and plots) and one ``OUT/NAME.json`` per experiment. An interrupted run
resumes where it stopped: every finished row is saved at once under ``OUT/.partial/`` and reused by the next run
with the same profile and seed (``--fresh`` starts over); the saved rows are removed once an experiment ends.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import shutil
import sys
import textwrap
import time

from experiments import _common

SHOWCASE: tuple[str, ...] = ("vanishing", "adding", "copy", "clipping", "fill_blank", "digits", "char_lm",
                              "selective_copy", "induction_heads")
OTHERS: tuple[str, ...] = ("flax_classifier", "mqar")


def run_one(name: str, profile: str, seed: int, out: pathlib.Path) -> dict:
    """Runs one experiment, writes ``out/NAME.json`` and drops its saved partial rows."""
    module = importlib.import_module(f"experiments.{name}")
    start = time.perf_counter()
    result = module.run(profile, seed, out)
    result.setdefault("config", {})["seconds"] = round(time.perf_counter() - start, 1)
    _common.write_json(result, out)
    (out / ".partial" / f"{name}.json").unlink(missing_ok=True)
    return result


def write_report(results: list[dict], out: pathlib.Path) -> pathlib.Path:
    """``out/report.md``: each experiment's summary, table and plots."""
    lines = ["# jrnn showcase", "",
             "Produced by `python -m experiments` (quick profile). Each section: what was measured, a table "
             "(one row per model), and the plots.", ""]
    for result in results:
        module = importlib.import_module(f"experiments.{result['experiment']}")
        lines += [f"## {result['experiment']}", "", (module.__doc__ or "").strip(), "",
                  f"**Result:** {result.get('summary', '')} ({result['config'].get('seconds', '?')} s)", "",
                  _common.markdown_table(result["rows"]), ""]
        lines += [f"![{plot}]({plot})" for plot in result.get("plots", [])] + [""]
        if result.get("details"):
            lines += [result["details"], ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


DESCRIPTION = "\n\n".join(textwrap.fill(paragraph, 79) for paragraph in (
    "Runs jrnn's experiments.",
    f"With no NAME: the showcase, the quick profile of {', '.join(SHOWCASE)}, with a summary table in the "
    "terminal, OUT/report.md (tables and plots) and one OUT/NAME.json per experiment. With a NAME: that experiment "
    "alone, in its full profile unless --quick or --profile says otherwise, written to OUT/NAME.json.",
    "An interrupted run resumes where it stopped: every finished row is saved at once under OUT/.partial/ and "
    "reused by the next run with the same profile and seed (--fresh starts over); the saved rows are removed once "
    "an experiment ends."))


def build_parser() -> argparse.ArgumentParser:
    """The command line; its help is plain text (no reST), as a terminal shows it."""
    parser = argparse.ArgumentParser(prog="python -m experiments", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=SHOWCASE + OTHERS, metavar="NAME",
                        help=f"one experiment: {', '.join(SHOWCASE + OTHERS)} (default: the showcase)")
    parser.add_argument("--quick", action="store_true", help="the quick profile (the showcase always uses it)")
    parser.add_argument("--profile", metavar="P", help="another named profile of one experiment, e.g. 'long' for "
                                                       "adding and copy (default: full)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="the random seed (default: 0)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results"), metavar="DIR",
                        help="where results go (default: results)")
    parser.add_argument("--fresh", action="store_true", help="ignore rows saved by an interrupted run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.out / ".partial", ignore_errors=True)

    names = SHOWCASE if args.name is None else (args.name,)
    profile = "quick" if args.quick or args.name is None else (args.profile or "full")
    if args.profile and (args.name is None or args.quick):
        parser.error("--profile needs one experiment NAME and no --quick")
    if args.name is not None:
        known = importlib.import_module(f"experiments.{args.name}").PROFILES
        if profile not in known:
            parser.error(f"{args.name} has the profiles {', '.join(known)}, not {profile!r}")
    results = []
    for name in names:
        print(f"== {name} ({profile} profile)", flush=True)
        result = run_one(name, profile, args.seed, args.out)
        print(f"   {result.get('summary', '')} [{result['config']['seconds']} s]", flush=True)
        results.append(result)

    print()
    for result in results:
        print(f"## {result['experiment']}: {result.get('summary', '')}")
        print(_common.markdown_table(result["rows"]))
        print()
    if args.name is None:
        print(f"wrote {write_report(results, args.out)} and {len(results)} JSON files in {args.out}/")
    else:
        print(f"wrote {args.out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
