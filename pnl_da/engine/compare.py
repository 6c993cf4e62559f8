"""``pnl-da compare``: several methods x seeds on one task, each run in its own folder below
one comparison folder (reused when finished, resumed when not), and one table of them all."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from pnl_da.errors import PnlError, UsageError


def method_keys() -> dict[str, set[str]]:
    from pnl_da.config import method_schemas

    return {name: {f.name for f in fields(schema)} for name, schema in method_schemas().items()}


def overrides_for(method: str, overrides: list[str], keys: dict[str, set[str]]) -> list[str]:
    """Method options (``method.k=3``) go to the methods that have them; the rest to all."""
    chosen = []
    for item in overrides:
        key = item.partition("=")[0]
        if key.startswith("method."):
            leaf = key.split(".", 1)[1]
            if not any(leaf in k for k in keys.values()):
                raise UsageError(f"unknown configuration key '{key}': no method has it; "
                                 "see configs/method/*.yaml for the options")
            if leaf not in keys[method]:
                continue
        elif key == "method":
            raise UsageError("compare chooses the methods itself; pass --methods m1,m2 "
                             "instead of method=...")
        chosen.append(item)
    return chosen


def plan(base: list[str], methods: list[str], seeds: list[int],
         overrides: list[str]) -> list[tuple[str, int, object]]:
    """(method, seed, configuration) of every run, all composed before any trains, so that
    a bad key fails first."""
    from pnl_da.config import available, inert_overrides
    from pnl_da.engine.tasks import compose

    known = available("method")
    for m in methods:
        if m not in known:
            raise UsageError(f"unknown method '{m}'; choose from: {', '.join(known)}")
    keys = method_keys()
    plans, used = [], set()
    for method in methods:
        extra = overrides_for(method, overrides, keys)
        # a method option that changes nothing in this method (method.entropy in DANN beside
        # CDAN) is left out of its runs; one that changes nothing in any method is an error
        inert = inert_overrides(compose(base + [f"method={method}"] + extra,
                                        allow_inert=True).method, extra)
        extra = [o for o in extra if o not in inert]
        used.update(extra)
        for seed in seeds:
            plans.append((method, seed, compose(base + [f"method={method}", f"seed={seed}"]
                                                + extra)))
    for item in overrides:
        if item.startswith("method.") and item not in used:
            raise UsageError(f"'{item}' changes nothing in the methods compared "
                             f"({', '.join(methods)}); leave it out")
    return plans


def compare(base: list[str], methods: list[str], seeds: list[int], overrides: list[str],
            hydra_args: list[str], out: Path | None, log=print, show=print) -> dict[str, Path]:
    """Plan, lock the comparison folder (default: the task's folder under runs/), train or
    reuse every run (through Hydra's launcher with ``hydra_args``), write the tables; returns
    their paths. ``log``: progress; ``show``: each run's result line and the table."""
    from pnl_da.data.download import remove_empty_folders
    from pnl_da.engine import signals
    from pnl_da.engine.run import refuse_file
    from pnl_da.engine.tasks import default_out_dir
    from pnl_da.files import lock_folder

    plans = plan(base, methods, seeds, overrides)
    out_root = out if out is not None else default_out_dir(plans[0][2]).parent.parent
    refuse_file(out_root)
    created = [d for d in (out_root, *out_root.parents) if not d.exists()]
    try:
        with signals.handled(), lock_folder(out_root, "comparison folder"):
            return _compare(methods, plans, overrides, hydra_args, out_root, log, show)
    except BaseException:
        remove_empty_folders(created)  # a comparison refused before it began leaves no folder
        raise


def _compare(methods: list[str], plans: list, overrides: list[str], hydra_args: list[str],
             out_root: Path, log, show) -> dict[str, Path]:
    """The comparison's runs (reused, resumed or trained) and its table, in a locked folder."""
    from pnl_da.config import to_yaml
    from pnl_da.engine.run import saved_run_difference
    from pnl_da.files import write_text
    from pnl_da.report.tables import aggregate, to_csv, to_latex, to_markdown

    jobs = [(method, seed, cfg, out_root / method / f"seed{seed}", to_yaml(cfg))
            for method, seed, cfg in plans]
    # a kept run with other settings is refused before anything trains, not when reached
    for _, _, _, out, cfg_yaml in jobs:
        diff = saved_run_difference(out, cfg_yaml)
        if diff:
            raise UsageError(f"{out} holds a run with another configuration ({diff}); compare "
                             "reuses identical runs only: choose another --out, or delete that "
                             "folder to train it again")
    if hydra_args:  # through Hydra's launcher (joblib, submitit): each run a job
        results = _launch(jobs, hydra_args, out_root, log)
    else:
        results = [_run_one(*job, log=log, show=show) for job in jobs]
    rows = aggregate(results, methods)
    cfg0 = plans[0][2]
    headline = results[0].get("headline", "accuracy") if results else "accuracy"
    if results and results[0].get("target_labels") is False:
        headline_text = "label-free scores (no target labels)"
    else:
        headline_text = f"target {headline.replace('_', ' ')}"
    options = f", {' '.join(overrides)}" if overrides else ""  # the variant run
    title = (f"{cfg0.benchmark.name} {cfg0.benchmark.source}->{cfg0.benchmark.target}, "
             f"{cfg0.backbone.name}, {cfg0.trainer.steps} steps{options}, "
             f"{headline_text} of the final model")
    files = {"md": out_root / "comparison.md", "csv": out_root / "comparison.csv",
             "tex": out_root / "comparison.tex"}
    table = to_markdown(rows, title, headline)
    write_text(files["md"], table)
    write_text(files["csv"], to_csv(rows))
    write_text(files["tex"], to_latex(rows, title, headline))
    show(table.rstrip("\n"))
    show(f"written: {', '.join(str(p) for p in files.values())}")
    return files


def _run_one(method: str, seed: int, cfg, out: Path, cfg_yaml: str, log, show) -> dict:
    """One run of a comparison, in this process: reused, resumed or trained."""
    from pnl_da.engine.run import execute, finished_result, holds_run
    from pnl_da.engine.tasks import task_class

    done = finished_result(out, cfg_yaml)
    if done is not None:
        log(f"{method} seed {seed}: reusing finished run {out}")
        return done
    resume = holds_run(out)
    log(f"{method} seed {seed}: {'resuming' if resume else 'training'} -> {out}")
    result = execute(cfg, out, resume=resume, log=log, go_on="run the same command again")
    show(task_class(cfg).result_line(result, out))
    return result


def _launch(jobs: list, hydra_args: list[str], out_root: Path, log) -> list[dict]:
    """The comparison's unfinished runs as jobs of Hydra's launcher; every run's result."""
    from pnl_da.engine.run import finished_result
    from pnl_da.engine.sweep import labelled_sweep, launch

    waiting = [(cfg, out) for _, _, cfg, out, cfg_yaml in jobs
               if finished_result(out, cfg_yaml) is None]
    if waiting and launch(labelled_sweep("da", waiting, hydra_args, out_root), log=log):
        raise PnlError("not every run of the comparison finished (see above); run the same "
                       "command again: finished runs are reused, the others resumed")
    return [finished_result(out, cfg_yaml) for *_, out, cfg_yaml in jobs]
