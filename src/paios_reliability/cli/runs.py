"""``paios-reliability runs list|show|resume``: resumable runs in a CheckpointStore."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ._common import add_command, add_group

__all__ = ["register"]

_EPILOG = """\
--store is the CheckpointStore: an SQLite checkpoint file, or a state store
(redis://host:port/db#prefix, or an SQLite state file with --state).

`resume` prepares the run and prints its plan; the worker that owns the
steps runs them on its next start (CheckpointStore.resume_point returns the
same plan). --force-restart clears every checkpoint of the run;
--skip-to STEP marks the steps before STEP skipped and clears STEP and
everything after it. The steps are the run's saved steps in order, or
--steps a,b,c (needed when a later step was never started).

exit codes: 0 done, 1 no such run, 10 bad usage, 42 a checkpoint fails its
checksum (INTEGRITY_ERROR).
"""


def _is_state(args: argparse.Namespace) -> bool:
    return bool(args.state) or args.store.startswith(
        ("redis://", "rediss://", "unix://")
    )


def _open(args: argparse.Namespace) -> Any:
    from .._core.exceptions import ConfigError
    from .._runs.checkpoint import CheckpointStore

    if _is_state(args):
        from .locks import _open_store

        return CheckpointStore(_open_store(args.store))
    if not os.path.isfile(args.store):
        raise ConfigError(f"no checkpoint file at {args.store}", code="USAGE_ERROR")
    return CheckpointStore(args.store)


def _summaries(args: argparse.Namespace) -> list[dict[str, Any]]:
    from .._observe.status import _read_only, _state_rows
    from .._observe.status_text import _iso
    from .._runs.checkpoint_backends import _store_rows

    runs: dict[str, list[tuple[str, float, float]]] = {}
    if _is_state(args):
        for key, value in _state_rows(args.store, ("checkpoint",)):
            run_id = key.partition(":")[2]
            runs[run_id] = [(r[1], r[5], r[6]) for r in _store_rows(value)]
    else:
        conn = _read_only(args.store)
        try:
            for run_id, status, created, updated in conn.execute(
                "SELECT run_id, status, created_at, updated_at FROM paios_checkpoints"
            ):
                runs.setdefault(run_id, []).append((status, created, updated))
        finally:
            conn.close()
    out: list[dict[str, Any]] = []
    for run_id, rows in runs.items():
        statuses = [r[0] for r in rows]
        out.append(
            {
                "run_id": run_id,
                "steps": len(rows),
                "completed": statuses.count("completed"),
                "skipped": statuses.count("skipped"),
                "running": statuses.count("running"),
                "failed": statuses.count("failed"),
                "started": _iso(min(r[1] for r in rows)),
                "updated": _iso(max(r[2] for r in rows)),
            }
        )
    out.sort(key=lambda r: r["updated"] or "", reverse=True)
    return out


def _cmd_list(args: argparse.Namespace) -> int:
    runs = _summaries(args)
    if args.json:
        print(json.dumps(runs, indent=2))
    elif not runs:
        print("no runs")
    for r in [] if args.json else runs:
        flags = ", ".join(
            f"{r[k]} {k}" for k in ("running", "failed", "skipped") if r[k]
        )
        print(
            f"{r['run_id']}  {r['completed']}/{r['steps']} completed"
            f"{'  (' + flags + ')' if flags else ''}  updated {r['updated']}"
        )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .._observe.status_text import _iso

    with _open(args) as store:
        checkpoints = sorted(store.load(args.run_id).values(), key=lambda c: c.seq)
    if not checkpoints:
        print(f"{args.run_id}: no such run")
        return 1
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "step": c.step,
                        "status": c.status,
                        "seq": c.seq,
                        "updated": _iso(c.updated_at),
                        "output": c.output,
                    }
                    for c in checkpoints
                ],
                indent=2,
                default=str,
            )
        )
        return 0
    width = max(len(c.step) for c in checkpoints)
    for c in checkpoints:
        output = json.dumps(c.output, default=str)
        if len(output) > 60:
            output = output[:57] + "..."
        print(
            f"{c.seq:>3}  {c.step.ljust(width)}  {c.status:<9}  {_iso(c.updated_at)}  {output}"
        )
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    with _open(args) as store:
        saved = sorted(store.load(args.run_id).values(), key=lambda c: c.seq)
        steps = (
            [s for s in args.steps.split(",") if s]
            if args.steps
            else [c.step for c in saved]
        )
        if not saved and not args.steps:
            print(f"{args.run_id}: no such run (give --steps to plan a new one)")
            return 1
        plan = store.resume_point(
            args.run_id, steps, force_restart=args.force_restart, skip_to=args.skip_to
        )
    print(
        f"run {plan.run_id}: {'restarted, ' if plan.restarted else ''}"
        f"{len(plan.completed)}/{len(plan.steps)} done"
    )
    if plan.skipped:
        print(f"  skipped: {', '.join(plan.skipped)}")
    print(f"  next: {plan.next_step or '(nothing: the run is complete)'}")
    if plan.remaining:
        print(f"  remaining: {', '.join(plan.remaining)}")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``runs`` command group."""
    runs_sub = add_group(
        sub, "runs", help="resumable runs: list, show, resume", epilog=_EPILOG
    )
    for name, handler, text in (
        ("list", _cmd_list, "every run: steps completed, running, failed"),
        ("show", _cmd_show, "one run's checkpoints in order"),
        ("resume", _cmd_resume, "prepare a run to resume and print its plan"),
    ):
        cmd = add_command(runs_sub, name, help=text, epilog=_EPILOG, handler=handler)
        if name != "list":
            cmd.add_argument("run_id", metavar="RUN_ID")
        if name == "resume":
            cmd.add_argument(
                "--force-restart", action="store_true", help="clear every checkpoint"
            )
            cmd.add_argument("--skip-to", metavar="STEP", help="start at this step")
            cmd.add_argument("--steps", metavar="A,B,C", help="the workflow's steps")
        else:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.add_argument("--store", required=True, metavar="PATH|URL")
        cmd.add_argument(
            "--state", action="store_true", help="--store is an SQLite state store"
        )
