"""The ``mmcourse`` command: data, student, run, refresh, grade, site, bench, env.

Each subcommand is a thin layer over a library or tool function, so everything the command does
can also be done from Python (and is tested there). ``python -m mmcourse`` runs it too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mmcourse.tools import CHECKOUT


def _cmd_data(args: argparse.Namespace) -> int:
    from mmcourse.data.store import DatasetError, check_dataset, check_output_folder, save_dataset
    from mmcourse.data.course import make_course_dataset

    if args.check:
        try:
            summary = check_dataset(args.check)
        except DatasetError as err:
            print(f"mmcourse data --check: {err}", file=sys.stderr)
            return 1
        print(summary)
        return 0
    if not args.out:
        print("mmcourse data: give --out DIR to write the dataset, or --check DIR to validate one",
              file=sys.stderr)
        return 2
    try:
        check_output_folder(args.out, args.overwrite)  # before the minutes of generating
        splits = make_course_dataset(seed=args.seed, size=args.size)
        manifest = save_dataset(splits, args.out, overwrite=args.overwrite, seed=args.seed,
                                size=args.size)
    except (ValueError, OSError) as err:  # OSError: FileExistsError, a folder that cannot be made
        print(f"mmcourse data: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
    print(f"wrote the course dataset (seed {args.seed}, size {args.size}: {counts}) "
          f"to {args.out}; {len(manifest['files'])} files, checksums in manifest.json")
    return 0


def _cmd_student(args: argparse.Namespace) -> int:
    from mmcourse.tools.student import NotebookError, make_student_notebooks
    from mmcourse.tools.translate import TranslationError, editions, build_edition

    root = _course_root(args.root)
    try:
        changed = make_student_notebooks(root / "solutions", root / "notebooks", check=args.check)
        for lang in editions(root):  # the translated editions follow the English solutions
            changed += build_edition(root, lang, check=args.check)
    except (NotebookError, TranslationError) as err:
        print(f"mmcourse student: {err}", file=sys.stderr)
        return 1
    if args.check:
        if changed:
            print("student notebooks out of date with solutions/: " + ", ".join(changed) +
                  "\nrun `mmcourse student` to regenerate them", file=sys.stderr)
            return 1
        print("student notebooks (and translated editions) are in sync with solutions/")
        return 0
    print("regenerated: " + (", ".join(changed) if changed else "nothing (all up to date)"))
    return 0


def _only(given: str | None, command: str) -> list[str] | None:
    """``--only``'s comma-separated notebooks as a list (None: not given, every notebook);
    an empty value is an error rather than "all of them"."""
    if given is None:
        return None
    only = [s.strip() for s in given.split(",") if s.strip()]
    if not only:
        raise SystemExit(f"mmcourse {command}: --only is empty (got {given!r}); give notebook "
                         f"numbers or names, e.g. --only 00,03, or leave it out to run them all")
    return only


def _positive_int(text: str) -> int:
    """An argparse type: a positive integer, or a one-line usage error saying what was given."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of seconds, got {text!r}")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from mmcourse.tools.runner import format_table, run_course

    root = _course_root(args.root)
    only = _only(args.only, "run")
    try:
        results = run_course(root, only=only, out_dir=args.out, solutions=args.solutions,
                             timeout=args.timeout, quiet=args.json, lang=args.lang)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # RuntimeError: no kernel; ValueError: --lang
        print(f"mmcourse run: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _cmd_refresh(args: argparse.Namespace) -> int:
    from mmcourse.tools.runner import RefreshError, refresh_solutions

    root = _course_root(args.root)
    only = _only(args.only, "refresh")
    try:
        for line in refresh_solutions(root, only=only):
            print(line)
    except RefreshError as err:  # a notebook failed (a RuntimeError: caught first)
        print(f"mmcourse refresh: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # bad --only, no kernel
        print(f"mmcourse refresh: {err}", file=sys.stderr)
        return 2
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    from mmcourse.envinfo import environment_report, format_report

    report = environment_report()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _course_root(given: str | None) -> Path:
    """The course folder (holding notebooks/ and solutions/): --root, else the current folder or
    one of its parents, else the checkout this package was installed from."""
    if given:
        root = Path(given).resolve()
        if not (root / "solutions").is_dir():
            raise SystemExit(f"mmcourse: {root} has no solutions/ folder; is it the course folder?")
        return root
    for candidate in [Path.cwd(), *Path.cwd().parents, CHECKOUT]:
        if (candidate / "solutions").is_dir() and (candidate / "notebooks").is_dir():
            return candidate
    raise SystemExit("mmcourse: cannot find the course folder (with notebooks/ and solutions/); "
                     "run from inside it or pass --root DIR")


def _cmd_site(args: argparse.Namespace) -> int:
    from mmcourse.tools.site import SiteError, build_site

    root = _course_root(args.root)
    try:
        build_site(root, args.out, solutions=not args.no_solutions)
    except SiteError as err:
        print(f"mmcourse site: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from mmcourse.tools import sandbox
    from mmcourse.tools.grading import (GradingError, check_grade_arguments, class_summary,
                                        format_grades, grade_notebook, grades_csv)
    from mmcourse.tools.runner import check_kernel

    try:  # every argument, before the first notebook runs
        pairs = check_grade_arguments(args.submissions, args.timeout, args.reference, args.csv)
        for folder in args.data or []:
            if not Path(folder).is_dir():
                raise GradingError(f"--data {folder}: no such folder")
        if args.memory <= 0 or args.processes < 8:
            raise GradingError("--memory must be positive (GiB) and --processes at least 8")
        if not args.no_sandbox and sandbox.find_bwrap() is None:
            raise GradingError("bubblewrap (bwrap) is not installed, and grading runs each "
                               "submission in its sandbox: install it (apt-get install bubblewrap, "
                               "or bash scripts/setup.sh as root), or pass --no-sandbox to run "
                               "submissions with your own rights")
        check_kernel()
    except (GradingError, RuntimeError) as err:
        raise SystemExit(f"mmcourse grade: {err}") from None
    if args.no_sandbox:
        print("mmcourse grade: WARNING: --no-sandbox: submissions run with your rights, files and "
              "environment", file=sys.stderr)
    if args.csv:
        Path(args.csv).write_text(grades_csv([]))
    results, began = [], time.monotonic()
    for number, (path, reference) in enumerate(pairs):
        try:
            result = grade_notebook(path, timeout=args.timeout, reference=reference,
                                    sandboxed=not args.no_sandbox, memory_gb=args.memory,
                                    max_processes=args.processes, data_dirs=args.data or ())
        except Exception as err:  # a grader bug: report it, keep grading the others
            result = {"notebook": path.name, "exercises": [], "seconds": 0.0, "warnings": [],
                      "error": f"grading failed: {type(err).__name__}: {err}"}
        results.append(result)
        if args.csv:  # notebook by notebook: what is graded is kept if a later one fails
            with open(args.csv, "a") as out:
                out.write(grades_csv([result], header=False))
        if not args.json:
            print(format_grades([result], header=number == 0), flush=True)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    elif len(results) > 1:
        print(class_summary(results, time.monotonic() - began))
    return 0


def _cmd_bench_fusion(args: argparse.Namespace) -> int:
    from mmcourse.tools.bench.fusion import format_fusion_table, run_fusion_bench

    try:
        report = run_fusion_bench(seeds=args.seeds, epochs=args.epochs, n_test=args.test_size,
                                  methods=tuple(args.methods) if args.methods else None,
                                  modality_dropout=args.modality_dropout, device=args.device)
    except ValueError as err:
        raise SystemExit(f"mmcourse bench fusion: {err}") from None
    print(json.dumps(report, indent=2) if args.json else format_fusion_table(report))
    return 0


def _cmd_bench_regimes(args: argparse.Namespace) -> int:
    from mmcourse.tools.bench.regimes import format_regimes_table, run_regimes_bench

    try:
        report = run_regimes_bench(seeds=args.seeds, epochs=args.epochs, workers=args.workers,
                                   log=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    except ValueError as err:
        raise SystemExit(f"mmcourse bench regimes: {err}") from None
    print(json.dumps(report, indent=2) if args.json else format_regimes_table(report))
    return 0


def _cmd_bench_joint(args: argparse.Namespace) -> int:
    from mmcourse.tools.bench.joint import DEFAULT_METHODS, format_joint_table, run_joint_bench

    log = None if args.json else (lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    try:
        report = run_joint_bench(seeds=args.seeds, epochs=args.epochs, device=args.device,
                                 methods=tuple(args.methods or DEFAULT_METHODS), log=log)
    except ValueError as err:
        raise SystemExit(f"mmcourse bench joint: {err}") from None
    print(json.dumps(report, indent=2) if args.json else format_joint_table(report))
    return 0


def _steps(only: str | None) -> tuple[str, ...]:
    from mmcourse.speed import ALL_STEPS

    return tuple(s.strip() for s in only.split(",") if s.strip()) if only else ALL_STEPS


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from mmcourse.tools.bench.train import format_train_table, run_train_bench

    log = None if args.json else (lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    try:
        report = run_train_bench(steps=args.steps, batch_size=args.batch_size,
                                 device=args.device, warmup=args.warmup,
                                 train_size=args.train_size, num_workers=args.workers,
                                 step_names=_steps(args.only), repeats=args.repeats, log=log)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"mmcourse bench train: {err}") from None
    print(json.dumps(report, indent=2) if args.json else format_train_table(report))
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    from mmcourse.tools import translate as tr
    from mmcourse.tools.translation_check import lint_files, sync_report

    root = _course_root(args.root)
    try:
        tr.check_language(args.lang)
        if args.lint is not None:
            problems = lint_files(root, [Path(p) for p in args.lint] or None, args.lang)
            for line in problems:
                print(line)
            print(f"{len(problems)} problem(s)" if problems else "translation files OK")
            return 1 if problems else 0
        if args.update or args.stamp:
            changed = tr.update_files(root, args.lang, stamp=set(args.stamp or ()))
            print("updated: " + (", ".join(changed) or "nothing"))
            return 0
        if args.check:
            report = sync_report(root, args.lang)
            print(report.format())
            return 1 if report.problems else 0
        written = tr.build_edition(root, args.lang)
        print(f"wrote {len(written)} notebook(s)" + (": " + ", ".join(written) if written else
                                                      " (the edition was up to date)"))
        return 0
    except (tr.TranslationError, OSError) as err:
        print(f"mmcourse translate: {err}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per ``_cmd_*`` function (``bench`` has two)."""
    from mmcourse.data.course import MODALITY_NAMES
    from mmcourse.fusion import FUSION_METHODS

    parser = argparse.ArgumentParser(prog="mmcourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="write the course dataset to a folder, or check one")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--size", default="small", help="small (default), medium or large")
    p.add_argument("--out", help="folder to write to")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--check", metavar="DIR", help="validate the dataset in DIR against its checksums")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("student", help="generate the student notebooks from solutions/")
    p.add_argument("--check", action="store_true", help="only report notebooks that are out of date")
    p.add_argument("--root", help="course folder (default: found from the current folder)")
    p.set_defaults(func=_cmd_student)

    p = sub.add_parser("translate", help="build the translated editions (solutions/zh, notebooks/zh) "
                       "from translations/, or check that they are in sync with the English notebooks")
    p.add_argument("--lang", default="zh", help="edition language (default zh)")
    p.add_argument("--check", action="store_true", help="list missing, extra and stale translated "
                   "cells, lost numbers, notebooks out of date, check messages without a translation")
    p.add_argument("--lint", nargs="*", metavar="FILE", help="check translation files only "
                   "(default: all of the language); executes nothing")
    p.add_argument("--update", action="store_true", help="add English cells that have no "
                   "translation (marked missing, with the English text), drop removed ones, re-order")
    p.add_argument("--stamp", nargs="+", metavar="CELL_ID", help="mark these cells' translations as "
                   "made from the current English source (after updating their text)")
    p.add_argument("--root", help="course folder (default: found from the current folder)")
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser("run", help="execute the course notebooks headless with papermill")
    p.add_argument("--only", help="comma-separated notebook numbers or names, e.g. 00,03")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--out", default="runs/latest", help="folder for executed notebooks (default runs/latest)")
    p.add_argument("--solutions", action="store_true", help="run solutions/ instead of the student notebooks")
    p.add_argument("--lang", default="en", help="edition: en (default) or zh (notebooks/zh, "
                   "check messages in Chinese)")
    p.add_argument("--timeout", type=_positive_int, default=900,
                   help="seconds allowed per cell (default 900)")
    p.add_argument("--root", help="course folder (default: found from the current folder)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("refresh", help="re-execute solution notebooks in place and regenerate students")
    p.add_argument("--only", help="comma-separated notebook numbers or names")
    p.add_argument("--root", help="course folder (default: found from the current folder)")
    p.set_defaults(func=_cmd_refresh)

    p = sub.add_parser("bench", help="benchmarks that print measured ratios and tables")
    bench = p.add_subparsers(dest="bench", required=True)
    b = bench.add_parser("fusion", help="every fusion method vs single modalities: clean, "
                         "corrupted, missing; mean and spread over seeds")
    b.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    b.add_argument("--epochs", type=int, default=12, help="epochs per fusion model (default 12)")
    b.add_argument("--test-size", type=int, default=1000, help="test objects per condition")
    b.add_argument("--methods", nargs="+", help="a subset of: " + " ".join(
        (*MODALITY_NAMES, *FUSION_METHODS)) + " (default: all)")
    b.add_argument("--modality-dropout", type=float, default=0.0,
                   help="modality dropout while training every fusion model (default 0)")
    b.add_argument("--device", help="cpu, cuda, mps (default: automatic)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=_cmd_bench_fusion)
    b = bench.add_parser("regimes", help="known-answer tasks (redundant, synergy, ...): every "
                         "single modality and fusion, over seeds, vs each regime's predicted winner")
    b.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    b.add_argument("--epochs", type=int, default=10, help="epochs per model (default 10)")
    b.add_argument("--workers", type=int, default=1, help="processes training at once, one per "
                   "CPU core (default 1; the numbers do not change)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=_cmd_bench_regimes)
    b = bench.add_parser("joint", help="concat, gated and attention fusion trained end to end "
                         "(encoders and fusion together) on the course data, over seeds")
    b.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    b.add_argument("--epochs", type=int, default=12, help="epochs per model (default 12)")
    b.add_argument("--methods", nargs="+", help="fusion methods, a subset of: "
                   + " ".join(FUSION_METHODS) + " (default: concat gated attention)")
    b.add_argument("--device", help="cpu, cuda, mps (default: automatic)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=_cmd_bench_joint)
    b = bench.add_parser("train", help="training throughput (samples/s) of the joint multimodal "
                         "model, step by step from a naive input pipeline to an optimized one")
    b.add_argument("--device", help="cpu, cuda, mps (default: automatic)")
    b.add_argument("--steps", type=int, default=20, help="timed training steps per pipeline "
                   "step (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3; "
                   "torch.compile compiles during them)")
    b.add_argument("--repeats", type=int, default=3, help="interleaved rounds; each step's "
                   "median is reported (default 3)")
    b.add_argument("--batch-size", type=int, default=128, help="samples per batch (default 128)")
    b.add_argument("--train-size", type=int, default=2048, help="training samples generated "
                   "(default 2048; batches cycle through them)")
    b.add_argument("--workers", type=int, help="DataLoader workers of the 'loader' step "
                   "(default: the CPU cores, at most 4)")
    b.add_argument("--only", help="comma-separated steps to measure (default all: naive, "
                   "batched, loader, on_device, bf16, fp16, channels_last, compile)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=_cmd_bench_train)

    p = sub.add_parser("grade", help="run submitted notebooks in a fresh kernel and grade "
                       "every exercise (table, --json or --csv)")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds allowed per notebook (default 600)")
    p.add_argument("--json", action="store_true", help="print JSON (one object per notebook; "
                   "a list for several)")
    p.add_argument("--csv", metavar="FILE", help="also write notebook,exercise,passed,message rows")
    p.add_argument("--reference", help="the notebook whose exercises are graded (default: "
                   "solutions/NN_*.ipynb for the number NN in the submission's name)")
    p.add_argument("--no-sandbox", action="store_true", help="run submissions without the "
                   "bubblewrap sandbox, with your rights (a warning goes into the report)")
    p.add_argument("--memory", type=float, default=8, help="memory cap per process of a "
                   "submission, GiB (default 8)")
    p.add_argument("--processes", type=int, default=512, help="process cap of a submission "
                   "(default 512)")
    p.add_argument("--data", action="append", metavar="DIR", help="a folder submissions may "
                   "read (read-only, at its own path); repeat for several")
    p.set_defaults(func=_cmd_grade)

    p = sub.add_parser("site", help="build the course website (offline) from the solution "
                       "notebooks and their committed outputs, each answer folded behind a "
                       "'Show solution' toggle")
    p.add_argument("--no-solutions", action="store_true",
                   help="leave the answers out: the student notebooks with the lesson cells' "
                   "committed outputs (a site to give learners)")
    p.add_argument("--out", help="build folder (default site/_build; open html/index.html)")
    p.add_argument("--root", help="course folder (default: found from the current folder)")
    p.set_defaults(func=_cmd_site)

    p = sub.add_parser("env", help="print versions and the device the course will use")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mmcourse.tools.runner import CPU_ISA_ENV

    args = build_parser().parse_args(argv)
    if not (args.command == "bench" and args.bench == "train"):
        # Before any tensor: the accuracy benches' numbers are the same on any x86-64 CPU (see
        # runner._cpu_isa_env). The throughput bench measures the CPU as it is (AVX-512, bf16).
        for key, value in CPU_ISA_ENV.items():
            os.environ.setdefault(key, value)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
