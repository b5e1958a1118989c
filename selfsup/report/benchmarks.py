"""The benchmarks' tables (benchmarks/*.py): the recipe ablation and its all-labels epochs, the fine-tuning schedule,
the distillation variants and the pretexts' compute."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selfsup.report.data import read_probes
from selfsup.report.probes import probe_draws, probe_gaps
from selfsup.report.tables import budget_order, interval_cell, mean_std, pretext_order, signed
from selfsup.statistics import excludes_zero, paired_interval

def recipe_markdown(table: pd.DataFrame) -> str:
    """The recipe ablation (benchmarks/recipe.py): per pretext, variant and budget, the honest val accuracy (what
    decides) and the test accuracy, mean ± std over seeds, with the change of the val mean against the baseline,
    and whether the variant's val mean beats the baseline's at every budget it ran at."""
    table = table.astype({"labels_per_class": str})
    budgets = budget_order(table.labels_per_class.unique())
    lines = ["| pretext | variant | " + " | ".join(f"val, {b} per class | test, {b} per class" for b in budgets)
             + " | better on val at every budget |", "|---" * (2 * len(budgets) + 3) + "|"]
    for pretext, part in table.groupby("pretext", sort=False):
        default = part[part.variant == "baseline"].groupby("labels_per_class").val_accuracy.mean()
        part = part.sort_values("variant", key=lambda v: v != "baseline", kind="stable")  # the baseline first
        for variant, runs in part.groupby("variant", sort=False):
            cells, better = [], []
            for b in budgets:
                at = runs[runs.labels_per_class == b]
                if at.empty:
                    cells += ["—", "—"]
                    continue
                delta = ""
                if variant != "baseline" and b in default:
                    change = at.val_accuracy.mean() - default[b]
                    better.append(change > 0)
                    delta = f" ({signed(100 * change)})"
                cells += [mean_std(at.val_accuracy) + delta, mean_std(at.test_accuracy)]
            kept = "—" if variant == "baseline" else ("yes" if better and all(better) else "no")
            lines.append(f"| {pretext} | {variant} | " + " | ".join(cells) + f" | {kept} |")
    defaults = table[table.variant == "baseline"]
    epochs = ", ".join(f"{b}: {defaults[defaults.labels_per_class == b].epochs.iloc[0]}" for b in budgets
                       if (defaults.labels_per_class == b).any())
    val = ", ".join(f"{b}: {table[table.labels_per_class == b].val_images.iloc[0]}" for b in budgets)
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + (f"\n\nUp to {table.seed.nunique()} seeds per cell; baseline epochs per budget {epochs}; "
                               f"val images per budget {val}; {table.compute.iloc[0]}, {threads} thread(s).")


BASELINE_SCHEDULE = "the epochs alone"  # the schedule table's baseline: the sweep's epochs per budget, no min_steps


def by_pretext(table: pd.DataFrame, params: dict) -> pd.DataFrame:
    """A benchmark's rows by pretext (params.yaml's `pretexts`), otherwise in their order; budgets as text."""
    order = {p: i for i, p in enumerate(pretext_order(table.pretext.unique(), params.get("pretexts", ())))}
    return table.astype({"labels_per_class": str}).sort_values("pretext", key=lambda p: p.map(order), kind="stable")


def schedule_rows(table: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The schedule benchmark's rows in the order its tables show them: by pretext, then by steps."""
    return by_pretext(table.sort_values("steps", kind="stable"), params)


def paired_val(at: pd.DataFrame, base: pd.Series | None) -> str:
    """The mean val accuracy of runs indexed by (budget, seed) and, against `base` (val accuracy by the same index),
    the difference seed by seed with its 95% interval, bold where it excludes 0."""
    val = f"{100 * at.val_accuracy.mean():.2f}"
    paired = (at.val_accuracy - base).dropna() if base is not None else ()
    return val + (f" ({paired_difference(paired, ', {} to {}')})" if len(paired) else "")


def paired_difference(paired: pd.Series, interval: str = " ({} to {})") -> str:
    """A difference paired by seed, in points, with its 95% interval in `interval`'s words (none for one seed), bold
    where the interval excludes 0: "+1.23 (+0.50 to +1.96)"."""
    n, mean, low, high = paired_interval(paired)
    text = signed(100 * mean) + (interval.format(signed(100 * low), signed(100 * high)) if n > 1 else "")
    return f"**{text}**" if excludes_zero(n, low, high) else text


def default_schedule(table: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The schedule benchmark's runs of params.yaml's schedule (min_steps, head and protocol)."""
    finetune = params["finetune"]
    return table[(table.min_steps == finetune["min_steps"]) & (table["head"] == finetune["head"])
                 & (table.protocol == finetune["protocol"])]


def paired_markdown(table: pd.DataFrame, schedule: pd.DataFrame, params: dict, column: tuple[str, str],
                    worst: bool = False) -> str:
    """Variants of params.yaml's recipe on the default schedule (benchmarks/recipe.py --base tuning or consistency):
    per pretext, variant and budget, the honest val accuracy (what decides) with its difference, seed by seed, from the
    default's runs (the schedule benchmark's runs of params.yaml's schedule, the same labelled and val images), and the
    test accuracy, never used to choose; `worst`: also the lowest recall of a class on test, where measured. `column`:
    the variants' column header and the default's name in it."""
    table, schedule = schedule_rows(table, params), schedule_rows(default_schedule(schedule, params), params)
    budgets = budget_order(table.labels_per_class.unique())
    header, default = column
    per_budget = ["val", "test"] + (["worst class, test"] if worst else [])
    lines = [f"| pretext | {header} | " + " | ".join(f"{m}, {b} per class" for b in budgets for m in per_budget)
             + " |", "|---" * (len(per_budget) * len(budgets) + 2) + "|"]
    for pretext, part in table.groupby("pretext", sort=False):
        base = schedule[schedule.pretext == pretext].set_index(["labels_per_class", "seed"])
        base = base[base.index.isin(part.set_index(["labels_per_class", "seed"]).index)]  # the seeds the variants ran
        for variant, runs in [(default, base.reset_index()), *part.groupby("variant", sort=False)]:
            cells = []
            for b in budgets:
                at = runs[runs.labels_per_class == b].set_index(["labels_per_class", "seed"])
                if at.empty:
                    cells += ["—"] * len(per_budget)
                    continue
                cells += [paired_val(at, None if variant == default else base.val_accuracy),
                          f"{100 * at.test_accuracy.mean():.2f}"]
                if worst:
                    recall = at.test_worst_class.mean() if "test_worst_class" in at else float("nan")
                    cells.append("—" if pd.isna(recall) else f"{100 * recall:.1f}")
            lines.append(f"| {pretext} | {variant} | " + " | ".join(cells) + " |")
    seeds = ", ".join(f"{b}: {table[table.labels_per_class == b].seed.nunique()}" for b in budgets)
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + (f"\n\nMeans over seeds (per budget {seeds}), each on the default schedule (the sweep's "
                               "epochs, at least finetune.min_steps steps); in brackets the val difference from the "
                               "default, seed by seed, and its 95% interval (**bold**: it excludes 0); "
                               f"{table.compute.iloc[0]}, {threads} thread(s).")


def tuning_markdown(table: pd.DataFrame, schedule: pd.DataFrame, params: dict) -> str:
    """The optimiser re-chosen on the default schedule (benchmarks/recipe.py --base tuning): `paired_markdown`."""
    finetune = params["finetune"]
    return paired_markdown(table, schedule, params, ("optimiser", (
        f"lr {finetune['lr']}, weight decay {finetune['weight_decay']}, pretrained layers at "
        f"{finetune['pretrained_lr']} lr (default)")))


def consistency_markdown(table: pd.DataFrame, schedule: pd.DataFrame, params: dict) -> str:
    """Consistency training against plain fine-tuning on the default schedule (benchmarks/recipe.py --base
    consistency): `paired_markdown`, with the class recognised worst on test, and the minutes of a run."""
    md = paired_markdown(table, schedule, params, ("unlabelled images", "none: plain fine-tuning (default)"),
                         worst=True)
    minutes = ", ".join(f"{variant} {runs.seconds.mean() / 60:.1f}"
                        for variant, runs in table.groupby("variant", sort=False))
    keys = ["pretext", "labels_per_class", "seed"]
    plain = default_schedule(schedule, params).astype({"labels_per_class": str})
    plain = plain.merge(table[keys].astype({"labels_per_class": str}).drop_duplicates())
    md += f" Minutes of fine-tuning per run (mean): {minutes}; plain fine-tuning {plain.seconds.mean() / 60:.1f}."
    runs = pd.concat([plain.assign(variant=PLAIN), table.astype({"labels_per_class": str})])
    return md + "\n\n" + pretext_gains_markdown(runs, params)


PLAIN = "plain fine-tuning"


def pretext_gains_markdown(runs: pd.DataFrame, params: dict) -> str:
    """Per fine-tuning (plain, and each consistency variant) and budget, each pretext's test accuracy gain over
    `none` fine-tuned the same way, paired by seed (the same labelled images), with its 95% interval (bold: it
    excludes 0). Test accuracy: reported, never used to choose."""
    runs = runs.astype({"labels_per_class": str})
    budgets = budget_order(runs.labels_per_class.unique())
    order = {p: i for i, p in enumerate(params.get("pretexts", ()))}
    others = sorted((p for p in runs.pretext.unique() if p != "none"), key=lambda p: order.get(p, len(order)))
    lines = ["| fine-tuning | pretext | " + " | ".join(f"gain over none on test, {b} per class" for b in budgets) + " |",
             "|---" * (len(budgets) + 2) + "|"]
    for variant, part in runs.groupby("variant", sort=False):
        base = part[part.pretext == "none"].set_index(["labels_per_class", "seed"]).test_accuracy
        for pretext in others:
            at = part[part.pretext == pretext].set_index(["labels_per_class", "seed"]).test_accuracy
            cells = []
            for b in budgets:
                paired = (at - base).dropna()
                paired = paired[paired.index.get_level_values("labels_per_class") == b]
                cells.append(paired_difference(paired) if len(paired) else "—")
            lines.append(f"| {variant} | {pretext} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def schedule_markdown(table: pd.DataFrame, params: dict) -> str:
    """The fine-tuning schedule chosen (benchmarks/recipe.py --base defaults): per pretext, variant and budget, the
    optimizer steps, the honest val accuracy (what decides) with its difference from the baseline paired by seed
    (the same labelled and val images) and 95% interval, and the test accuracy, never used to choose. The variant
    params.yaml's min_steps, head and protocol give is marked as the default; where the head's layer was chosen
    (head: probe), the layers chosen are listed with the steps."""
    table = schedule_rows(table, params)
    budgets = budget_order(table.labels_per_class.unique())
    lines = ["| pretext | schedule | " + " | ".join(f"steps, {b} per class | val, {b} per class | test, {b} per class"
                                                  for b in budgets) + " |", "|---" * (3 * len(budgets) + 2) + "|"]
    default = tuple(params["finetune"][k] for k in ("min_steps", "head", "protocol"))
    for pretext, part in table.groupby("pretext", sort=False):
        base = part[part.variant == "baseline"].set_index(["labels_per_class", "seed"]).val_accuracy
        for variant, runs in part.groupby("variant", sort=False):
            cells = []
            for b in budgets:
                at = runs[runs.labels_per_class == b].set_index(["labels_per_class", "seed"])
                if at.empty:
                    cells += ["—"] * 3
                    continue
                val = paired_val(at, None if variant == "baseline" else base)
                steps = str(int(at.steps.iloc[0]))
                if (at["head"] == "probe").all():
                    chosen = at.layer.value_counts()
                    steps += " (" + ", ".join(f"{layer} ×{n}" if n > 1 else layer for layer, n in chosen.items()) + ")"
                cells += [steps, val, f"{100 * at.test_accuracy.mean():.2f}"]
            first = runs.iloc[0]
            name = BASELINE_SCHEDULE if variant == "baseline" else variant
            mark = " (default)" if (int(first.min_steps), first["head"], first.protocol) == default else ""
            lines.append(f"| {pretext} | {name}{mark} | " + " | ".join(cells) + " |")
    seeds = ", ".join(f"{b}: {table[table.labels_per_class == b].seed.nunique()}" for b in budgets)
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + (f"\n\nMeans over seeds (per budget {seeds}); in brackets the val difference from "
                               f"{BASELINE_SCHEDULE}, seed by seed, and its 95% interval (**bold**: it excludes 0); "
                               f"{table.compute.iloc[0]}, {threads} thread(s).")


def distill_recipe_markdown(table: pd.DataFrame) -> str:
    """The distillation variants (benchmarks/distill.py): per pretext, budget and variant, the teacher's and the
    student's honest val accuracy (what decides) and test accuracy, means over seeds, and the minutes it took."""
    table = table.astype({"labels_per_class": str})
    lines = ["| pretext | labels per class | variant | val: teacher → student | test: teacher → student "
             "| minutes | runs |", "|---|---|---|---|---|---|---|"]
    for (pretext, budget, variant), runs in table.groupby(["pretext", "labels_per_class", "variant"], sort=False):
        val, test = runs.val_accuracy.mean() - runs.teacher_val_accuracy.mean(), \
            runs.test_accuracy.mean() - runs.teacher_test_accuracy.mean()
        lines.append(f"| {pretext} | {budget} | {variant} | {100 * runs.teacher_val_accuracy.mean():.2f} → "
                     f"{100 * runs.val_accuracy.mean():.2f} ({signed(100 * val)}) | {100 * runs.teacher_test_accuracy.mean():.2f}"
                     f" → {100 * runs.test_accuracy.mean():.2f} ({signed(100 * test)}) | {runs.seconds.mean() / 60:.1f} "
                     f"| {len(runs)} |")
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + f"\n\n{table.compute.iloc[0]}, {threads} thread(s); minutes: the distillation alone, wall time as measured (not always on an idle machine)."


def balance_markdown(table: pd.DataFrame, params: dict) -> str:
    """Pseudo-labels by a threshold against pseudo-labels balanced per class (benchmarks/distill.py --out
    metrics/distill_balance.tsv): per pretext, budget and variant, the student's honest val accuracy (what decides)
    with its difference from the first variant seed by seed (the same teacher, labelled and val images), the test
    accuracy and the test recall of the class the student recognises worst, means over seeds; and each student
    against its own teacher (the same seed), on val and on test, with 95% intervals."""
    table = by_pretext(table, params)
    lines = ["| pretext | labels per class | pseudo-labels | images with a target | val | test "
             "| student − teacher, val | student − teacher, test | worst class on test | runs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (pretext, budget), part in table.groupby(["pretext", "labels_per_class"], sort=False):
        variants = list(part.variant.unique())
        base = part[part.variant == variants[0]].set_index(["labels_per_class", "seed"]).val_accuracy
        teacher = part.drop_duplicates("seed")
        lines.append(f"| {pretext} | {budget} | none (the fine-tuned teacher) | {budget} per class | "
                     f"{100 * teacher.teacher_val_accuracy.mean():.2f} | {100 * teacher.teacher_test_accuracy.mean():.2f} "
                     f"| — | — | {100 * teacher.teacher_test_worst_class.mean():.1f} | {len(teacher)} |")
        for variant, runs in part.groupby("variant", sort=False):
            at = runs.set_index(["labels_per_class", "seed"])
            gains = [paired_difference(runs[f"{split}_accuracy"] - runs[f"teacher_{split}_accuracy"])
                     for split in ("val", "test")]
            lines.append(f"| {pretext} | {budget} | {variant} | {runs.targets.mean():,.0f} | "
                         f"{paired_val(at, None if variant == variants[0] else base)} | "
                         f"{100 * runs.test_accuracy.mean():.2f} | {' | '.join(gains)} | "
                         f"{100 * runs.test_worst_class.mean():.1f} | {len(runs)} |")
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    return "\n".join(lines) + ("\n\nMeans over seeds; in brackets the val difference from the first variant, seed by "
                               "seed, and its 95% interval; student − teacher: each student against its own teacher "
                               "(the same seed: the same labelled and val images), with its 95% interval (**bold**: an "
                               "interval that excludes 0); the teachers fine-tuned on the default schedule; "
                               f"{table.compute.iloc[0]}, {threads} thread(s).")


def pretext_compute_markdown(table: pd.DataFrame, params: dict) -> str:
    """The pretext variants (benchmarks/pretext.py): per variant, the minutes of pre-training and the frozen-feature
    probe's honest val accuracy (what decides; with its change against the pretext's reference, the paper's setting,
    seed by seed, with its 95% interval where two or more pre-training seeds ran) and test accuracy at each label
    budget measured, means over seeds. The variant with params.yaml's views and epochs is marked as the pipeline's
    default."""
    budgets = budget_order(c.removeprefix("val_") for c in table.columns if c.startswith("val_"))
    lines = ["| pretext | pre-training | minutes | inputs seen | " + " | ".join(
        f"probe val, {b} per class | probe test, {b} per class" for b in budgets) + " | seeds |",
        "|---" * (5 + 2 * len(budgets)) + "|"]
    for pretext, part in table.groupby("pretext", sort=False):
        part = part.sort_values("reference", ascending=False, kind="stable")  # the reference first, others as run
        reference = part[part.variant == part.variant.iloc[0]].set_index("seed")
        default = params["pretrain"].get(pretext, {})
        for variant, runs in part.groupby("variant", sort=False):
            runs, row = runs.set_index("seed"), runs.iloc[0]
            cells = []
            for b in budgets:
                val = runs[f"val_{b}"].dropna()
                if val.empty:  # a variant run at other budgets than this one
                    cells += ["—", "—"]
                    continue
                change = (val - reference[f"val_{b}"]).dropna()  # seed by seed, where the reference ran it
                change = "" if row.reference or change.empty else f" ({paired_difference(change, ', {} to {}')})"
                cells += [f"{100 * val.mean():.2f}{change}", f"{100 * runs[f'test_{b}'].dropna().mean():.2f}"]
            marks = ["reference"] * bool(row.reference) + ["default"] * (
                (row.views, row.epochs) == (default.get("views"), default.get("epochs")))
            name = variant.split(": ", 1)[-1] + (f" ({', '.join(marks)})" if marks else "")
            lines.append(f"| {pretext} | {name} | {runs.seconds.mean() / 60:.1f} | {row.inputs_seen / 1e6:.2f} M | "
                         + " | ".join(cells) + f" | {', '.join(map(str, sorted(runs.index)))} |")
    threads = ", ".join(map(str, sorted(table.threads.unique())))
    draws = str(table[f"layers_{budgets[0]}"].dropna().iloc[0]).count(",") + 1  # one chosen layer per label draw
    return "\n".join(lines) + (f"\n\n{table.compute.iloc[0]}, {threads} thread(s); minutes: the pre-training alone, "
                               "wall time as measured, mean over seeds; seeds: the pre-training seeds run "
                               "(initialisation, batch order, augmentation); val and test: means over them, in brackets "
                               "the val change from the reference, seed by seed, with its 95% interval where two or "
                               "more seeds ran (**bold**: it excludes 0); "
                               f"probe: {draws} label draw(s) per budget, the same for every seed, the layer chosen per "
                               "draw on its val images (at most k per class), linear probe.")


def epochs_markdown(table: pd.DataFrame) -> str:
    """The fine-tuning schedule's trade-off with all labels, from the recipe ablation's baseline and `epochs ×N`
    rows: per pretext and number of epochs, the honest val and the test accuracy (mean ± std over seeds) and the
    minutes of fine-tuning (mean wall time of a run, as measured)."""
    rows = table[(table.labels_per_class.astype(str) == "all")
                 & ((table.variant == "baseline") | table.variant.str.startswith("epochs ×"))]
    lines = ["| pretext | fine-tuning epochs | val accuracy | test accuracy | minutes of fine-tuning | runs |",
             "|---|---|---|---|---|---|"]
    rows = rows.sort_values("epochs", kind="stable")
    for (pretext, epochs), runs in rows.groupby(["pretext", "epochs"], sort=False):
        lines.append(f"| {pretext} | {epochs} | {mean_std(runs.val_accuracy)} | {mean_std(runs.test_accuracy)} "
                     f"| {runs.seconds.mean() / 60:.1f} | {len(runs)} |")
    threads = ", ".join(map(str, sorted(rows.threads.unique())))
    return "\n".join(lines) + (f"\n\nAll {rows.val_images.iloc[0]} val images; {rows.compute.iloc[0]}, {threads} "
                               "thread(s); minutes: wall time as measured, on whatever else the machine ran.")


def schedule_block(table: pd.DataFrame, params: dict, root: Path, read) -> str:
    """The schedule table, and each schedule's fine-tuned model against the linear probe of the same backbone on
    the same labelled images (the seeds the probe drew)."""
    runs = schedule_rows(table, params)
    draws = probe_draws(read_probes(root, read))
    budgets = budget_order(runs.labels_per_class.unique())
    lines = ["| fine-tuned − probe | schedule | " + " | ".join(f"{b} per class" for b in budgets) + " |",
             "|---" * (len(budgets) + 2) + "|"]
    for (pretext, variant), part in runs.groupby(["pretext", "variant"], sort=False):
        gaps = {r.labels_per_class: r for r in probe_gaps(part, draws, protocol=None).itertuples()}
        if gaps:
            name = BASELINE_SCHEDULE if variant == "baseline" else variant
            lines.append(f"| {pretext} | {name} | " + " | ".join(interval_cell(gaps[b]) if b in gaps else "—"
                                                                for b in budgets) + " |")
    probes = ("\n\nEach schedule's fine-tuned model against the frozen linear probe of the same backbone on the same "
              "labelled images (docs/results.md), test accuracy, paired by seed over the label draws the probe ran "
              "(**bold**: the 95% interval excludes 0):\n\n" + "\n".join(lines)) if len(lines) > 2 else ""
    return schedule_markdown(table, params) + probes
