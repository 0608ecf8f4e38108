"""The comparison's outputs: plots (PNG), an HTML report that embeds them, and the tables.

<out>/report.html   the plots, the summary table, every level's events by day
<out>/quality.png   live ROC AUC per day, the three levels on one axis, events marked
<out>/drift.png     the share of drifted features monitoring saw (levels 1 and 2), and the
                    share of the champion's attributions that moved
<out>/summary.md    the summary table, as printed
<out>/summary.json  the same figures, for tests and notebooks (level 2's rollout kinds under
                    "rollout kinds", the group-harm story's under "group harm")
<out>/rollout_kinds.md   level 2's rollout kinds side by side (compare/rollouts.py)
<out>/group_harm.png   the group-harm story: the harmed group's live figures per level, by week
<out>/group_harm.md    the group-harm story's figures per level (compare/group_harm.py)
<out>/days.csv      one row per level and day
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from compare.changes import HARMED  # noqa: E402
from compare.group_harm import WEEK  # noqa: E402
from compare.levels import PIPELINE, Level  # noqa: E402
from compare.servers import AB_SHARE, CANARY_SHARE  # noqa: E402
from compare.settings import CompareSettings  # noqa: E402
from compare.summary import fmt, markdown  # noqa: E402
from compare.world import story  # noqa: E402

COLORS = {0: "#d62728", 1: "#1f77b4", 2: "#2ca02c"}
STYLES = {0: "-", 1: "--", 2: "-"}
MARKERS = {
    "release": "^",
    "revert": "v",
    "ci": "x",
    "canary": "x",
    "gate": "s",
    "batch-rejected": "D",
}


def _story(ax, settings: CompareSettings) -> None:
    """Shade the scenario's changes on an axis."""
    spans = [
        (
            settings.covariate_shift_day,
            settings.covariate_shift_days,
            "#f2e6ff",
            "user base gets younger",
        ),
        (
            settings.concept_drift_day,
            settings.concept_drift_days,
            "#ffe6e6",
            "churn drivers change",
        ),
    ]
    for start, days, color, label in spans:
        if start is not None:
            ax.axvspan(start, start + days, color=color, label=label, zorder=0)
    if settings.incident_day is not None:
        ax.axvline(
            settings.incident_day,
            color="#999999",
            linestyle=":",
            label=f"export breaks ({settings.incident})",
        )
    for day, label in (
        (settings.good_change_day, "good push"),
        (settings.bad_change_day, "bad push"),
    ):
        if day is not None:
            ax.axvline(day, color="#555555", linestyle="--", linewidth=0.8)
            ax.annotate(label, (day, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        rotation=90, va="top", ha="right")  # fmt: skip


def plot_quality(
    days: pd.DataFrame, levels: list[Level], settings: CompareSettings, path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(11, 4.5))
    _story(ax, settings)
    for level in levels:
        table = days[days.level == level.number]
        ax.plot(
            table.day,
            table.roc_auc,
            color=COLORS[level.number],
            linestyle=STYLES[level.number],  # level 1 dashed: it runs under level 2 at times
            label=f"level {level.number} ({level.title})",
        )
        for kind, marker in MARKERS.items():
            marked = sorted({e.day for e in level.events if e.kind == kind})
            values = table.set_index("day").roc_auc.reindex(marked)
            ax.scatter(marked, values, marker=marker, color=COLORS[level.number], s=40, zorder=3)
    ax.set(xlabel="day", ylabel="live ROC AUC (by day answered)", ylim=(0, 1),
           title="Live quality per level (markers: ^ release, v revert, x stopped, D bad batch)")  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_drift(days: pd.DataFrame, settings: CompareSettings, path: Path) -> None:
    """Monitoring's two drift figures per level: the share of features that drifted, and the
    share of the champion's attributions that moved (what it leans on), with their bars."""
    fig, ax = plt.subplots(figsize=(11, 3.3))
    _story(ax, settings)
    for number in (1, 2):
        table = days[days.level == number]
        ax.plot(table.day, table.drift_share, color=COLORS[number], linestyle=STYLES[number],
                label=f"level {number}: share of features drifted")  # fmt: skip
        ax.plot(table.day, table.attribution_shift, color=COLORS[number], linestyle=":",
                label=f"level {number}: share of attributions moved")  # fmt: skip
    for value, style, name in ((PIPELINE.drift_share_threshold, "--", "drift"),
                               (PIPELINE.max_attribution_shift, ":", "attribution shift")):  # fmt: skip
        ax.axhline(value, color="black", linewidth=0.8, linestyle=style,
                   label=f"{name} alert threshold")  # fmt: skip
    ax.set(xlabel="day", ylabel="share", ylim=(0, 1),
           title="Drift monitoring: the inputs, and what the model leans on (level 0 has none)")  # fmt: skip
    ax.legend(loc="upper right", fontsize=7, ncol=2)  # the pushes are annotated at the left
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_group_harm(tables: list[pd.DataFrame], settings: CompareSettings, path: Path) -> None:
    """The harmed group's live ROC AUC and share of churners flagged, per level, each day on
    the week of answers ending that day; the other customers' (level 0's) for the gap."""
    group = "=".join(HARMED)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
    for ax, figure, title in zip(axes, ("roc_auc", "true_positive_rate"),
                                 ("live ROC AUC", "share of churners flagged"), strict=True):  # fmt: skip
        for table in tables:
            number = int(table.level.iloc[0])
            ax.plot(table.day, table[f"group_{figure}"], color=COLORS[number],
                    linestyle=STYLES[number], label=f"level {number}: {group}")  # fmt: skip
        ax.plot(tables[0].day, tables[0][f"rest_{figure}"], color="#888888", linestyle=":",
                label="level 0: the other customers")  # fmt: skip
        ax.axvline(settings.group_harm_day, color="#555555", linestyle="--", linewidth=0.8)
        ax.annotate("harmful push", (settings.group_harm_day, 0.02),
                    xycoords=("data", "axes fraction"), fontsize=8, rotation=90, ha="right")  # fmt: skip
        ax.set(xlabel="day", ylim=(0, 1), title=f"{title}, {WEEK}-day window")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _harm_section(harm: pd.DataFrame, settings: CompareSettings, out: Path) -> str:
    if harm.empty:
        return ""
    head = "".join(f"<th>level {html.escape(str(c))}</th>" for c in harm.columns)
    return f"""<h2>A change that harms one group</h2>
<p id="harm-story">A world of its own (scenario "group-harm"): rural customers, 15 % of them,
leave a slow service even when it is on time. On day {settings.group_harm_day} a developer
pushes "search wider, drop avg_delivery_minutes" (late deliveries seem to carry it). Over all
customers the model's ROC AUC falls by about 0.02, within its spread from day to day; for rural
customers delivery time was the driver. Level 0 hands it
over (it beats the baseline); level 1's gate rejects every candidate its released code trains,
and level 2's staging gate rejects the push before any release: the rural slice's ROC AUC falls
further below the champion's than the gate allows. The gate's fairness bound (equalized odds
difference) does not see it: rural churners were the best flagged group, and the change brings
them down toward the others.</p>
<figure id="group-harm">{_image(out / "group_harm.png")}</figure>
<table id="harm"><tr><th>figure</th>{head}</tr>{_rows(harm)}</table>
"""


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{path.stem}" src="data:image/png;base64,{data}">'


def _rows(frame: pd.DataFrame) -> str:
    return "".join(
        f"<tr><th>{html.escape(str(k))}</th>"
        + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row)
        + "</tr>"
        for k, row in frame.iterrows()
    )


def _kinds_section(by_kind: pd.DataFrame, settings: CompareSettings) -> str:
    if by_kind.empty:
        return ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in by_kind.columns)
    return f"""<h2>Level 2's rollout kinds</h2>
<p id="kinds-story">Level 2 replayed once per rollout kind, with two pushes: on day
{settings.rollout_bad_day} a bad change CI and the gate cannot see (a wider search with the
classes weighed evenly: the model ranks customers as well or better, but flags far more of them
as churners), and on day {settings.rollout_good_day} the good change. The story's own bad push
is stopped by CI under every kind. A canary
answers {html.escape(f"{CANARY_SHARE:.0%}")} of the customers until it has answered enough; a
shadow answers nobody and scores everyone; an A/B test answers {html.escape(f"{AB_SHARE:.0%}")}
of the customers and waits for their labels ({settings.label_delay_days} days late).</p>
<table id="kinds"><tr><th>figure</th>{head}</tr>{_rows(by_kind)}</table>
"""


def write(out: Path, settings: CompareSettings, levels: list[Level], days: pd.DataFrame,
          summary: pd.DataFrame, by_kind: pd.DataFrame | None = None,
          harm: pd.DataFrame | None = None, harm_days: list[pd.DataFrame] | None = None) -> Path:  # fmt: skip
    by_kind = pd.DataFrame() if by_kind is None else by_kind
    harm = pd.DataFrame() if harm is None else harm
    out.mkdir(parents=True, exist_ok=True)
    plot_quality(days, levels, settings, out / "quality.png")
    plot_drift(days, settings, out / "drift.png")
    days.to_csv(out / "days.csv", index=False)
    (out / "summary.md").write_text(markdown(summary) + "\n")
    figures = {str(c): {k: summary.loc[k, c] for k in summary.index} for c in summary.columns}
    figures["rollout kinds"] = {
        str(c): {k: by_kind.loc[k, c] for k in by_kind.index} for c in by_kind.columns
    }
    figures["group harm"] = {str(c): {k: harm.loc[k, c] for k in harm.index} for c in harm.columns}
    if not by_kind.empty:
        (out / "rollout_kinds.md").write_text(markdown(by_kind, "rollout") + "\n")
    if not harm.empty:
        (out / "group_harm.md").write_text(markdown(harm) + "\n")
        plot_group_harm(harm_days or [], settings, out / "group_harm.png")
    (out / "summary.json").write_text(json.dumps(figures, indent=2, default=float) + "\n")
    table = _rows(summary)
    events = "".join(
        f"<tr><td>{e.day}</td><td>{lv.number}</td><td>{e.kind}</td><td>{'yes' if e.manual else ''}</td>"
        f"<td>{html.escape(e.text)}</td></tr>"
        for lv in levels for e in lv.events if e.kind != "alert" or e.text.startswith("live")
    )  # fmt: skip
    head = "".join(f"<th>level {html.escape(str(c))}</th>" for c in summary.columns)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MLOps levels compared</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}img{{max-width:100%}}</style>
</head><body>
<h1>One scenario, three maturity levels</h1>
<p>{html.escape(story(settings))} Seed {settings.seed}; the levels take over on day {settings.start_day}.</p>
<h2>Live quality</h2><figure id="quality">{_image(out / "quality.png")}</figure>
<h2>Drift monitoring</h2><figure id="drift">{_image(out / "drift.png")}</figure>
<h2>Summary</h2>
<p id="alerts">Alerts are those of the levels' Prometheus rules, fired on what each level's own
code decided; true when one of the story's incidents they can see was going on. Level 0 has no
monitoring and raises none: its person looks {settings.notice_days} days after a release.</p>
<table id="summary"><tr><th>figure</th>{head}</tr>{table}</table>
{_kinds_section(by_kind, settings)}{_harm_section(harm, settings, out)}<h2>What each level did</h2>
<table id="events"><tr><th>day</th><th>level</th><th>kind</th><th>manual</th><th>what</th></tr>{events}</table>
<script>
// Mark each plot once the browser has decoded it (a plot that fails says so in its place).
window.addEventListener("load", () => {{
  for (const img of document.images) {{
    img.dataset.rendered = img.complete && img.naturalWidth > 0;
    if (img.dataset.rendered !== "true") img.replaceWith("plot missing: see " + img.alt + ".png");
  }}
  document.body.dataset.plots = [...document.images].filter((i) => i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.html"
