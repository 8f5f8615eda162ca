"""The careful subject and its single-bug mutants over the whole case library: the verdicts of each.

    python benchmarks/mutants.py [--cases cases] [--subjects careful,clamp-logits-88,...] [--fails careful]

tests/subjects/careful.py computes binary cross-entropy as carefully as one can in the dtype under test (on
the correctly rounded ``rounded.xp``); each mutant differs from it in one step. A mutant that no check fails
is a bug the suite cannot see. Each subject is a whole run, in this process, through the same path as
``python -m conformance run --adapter tests/subjects/careful.py:<loader>`` (``runner.plan``, then every
check), with the adapter given as the module ``careful`` (tests/subjects on the import path), so that it is
imported once and its memo of correctly rounded values serves every subject; the subjects share one set of
exact references too (the same cases, the same cast inputs), computed once. Prints, per subject, the count
of results per verdict and, for a mutant, how many checks fail it and the first of them (in the plan's
order); ``--fails`` lists every failing check of the subjects named (the careful subject's, to tell its
conditioning from its bugs). Deterministic: the subjects' results are the same bits on any host, and the
output changes with the suite's verdicts alone (and the machine line); progress and timings go to stderr.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

from _common import REPO, header, table

ADAPTER = REPO / "tests" / "subjects" / "careful.py"
VERDICTS = ("exact", "acceptable", "conditioned", "known_divergence", "fail", "error", "unsupported", "unexpected_pass")
PROBLEMS = ("fail", "error", "unexpected_pass")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=str(REPO / "cases"), help="case files or folders, comma-separated")
    parser.add_argument("--subjects", default="", help="careful and / or mutant names, comma-separated (default: all)")
    parser.add_argument("--fails", default="", help="subjects whose every failing check is listed, comma-separated")
    args = parser.parse_args()

    sys.path.insert(0, str(ADAPTER.parent))
    import careful  # the mutants' names; each run loads the adapter by its spec careful:<loader>, as a user would

    from conformance.runner import plan

    subjects = [s for s in args.subjects.split(",") if s] or ["careful", *careful.MUTANTS]
    unknown = [s for s in subjects if s != "careful" and s not in careful.MUTANTS]
    if unknown:
        parser.error(f"unknown subject(s) {', '.join(unknown)} (careful, or one of: {', '.join(careful.MUTANTS)})")
    listed = {s for s in args.fails.split(",") if s}
    cases = [c for c in args.cases.split(",") if c]

    header("mutants: the careful subject and its single-bug mutants, every check of the case library")
    rows, firsts, details, shared = [], [], [], None
    for subject in subjects:
        loader = "load" if subject == "careful" else "load_" + subject.replace("-", "_")
        started = time.perf_counter()
        run = plan(None, cases, adapter=f"careful:{loader}", timeout=0)
        if shared is None:
            shared = run.runner.exact
        run.runner.exact = shared  # the same cases and cast inputs: one set of exact references for every subject
        counts: collections.Counter = collections.Counter()
        failing = []
        for number, check in enumerate(run.checks, 1):
            result = run.runner.run(check)
            counts[result.verdict] += 1
            if result.verdict in PROBLEMS:
                failing.append((check.id, result.verdict, result.max_ulp, result.message))
            if number % 200 == 0 or number == len(run.checks):
                elapsed = time.perf_counter() - started
                print(f"  {subject}: {number}/{len(run.checks)} checks, {elapsed:.0f} s", file=sys.stderr, flush=True)
        other = sorted(set(counts) - set(VERDICTS))  # a verdict this script does not know yet
        row = [subject, sum(counts.values()), *(counts[v] for v in VERDICTS)]
        rows.append(row + ([", ".join(f"{v} {counts[v]}" for v in other)] if other else []))
        if subject != "careful":
            first = failing[0][0] if failing else "NONE: no check fails this mutant"
            firsts.append([subject, len(failing), first])
        if subject in listed:
            details.append((subject, failing))
    headers = ["subject", "results", *VERDICTS]
    if any(len(row) > len(headers) for row in rows):
        headers.append("other")
        rows = [row + [""] * (len(headers) - len(row)) for row in rows]
    print(table(headers, rows))
    if firsts:
        print("\nmutants: what each gets wrong, how many checks fail it, and the first of them\n")
        descriptions = {name: description for name, (_, description) in careful.MUTANTS.items()}
        print(table(["mutant", "failing", "first failing check"], firsts))
        print()
        for name, *_ in firsts:
            print(f"- {name}: {descriptions[name]}")
        caught = sum(1 for _, count, _ in firsts if count)
        print(f"\n{caught} of {len(firsts)} mutants fail at least one check")
    for subject, failing in details:
        print(f"\n{subject}: {len(failing)} failing checks\n")
        for check_id, verdict, max_ulp, message in failing:
            print(f"- {check_id}: {verdict}, max {max_ulp} ULP: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
