"""One commit's way through a stage (CI or CD) as a table of steps: the flow run's markdown
artifact, keyed by the stage and the commit (`ci-<sha>`, `cd-<sha>`), so that the Prefect
UI's Artifacts page shows every commit's result, stage by stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE


class StepFailed(RuntimeError):
    """A step said no: the commit is red (CI) or not delivered (CD)."""


@dataclass
class Report:
    stage: str  # "CI" or "CD"
    sha: str
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (step, result, detail)

    @property
    def key(self) -> str:
        return f"{self.stage.lower()}-{self.sha[:12]}"

    @property
    def green(self) -> bool:
        return all(result != "failed" for _, result, _ in self.steps)

    @property
    def last_step(self) -> str:
        return self.steps[-1][0] if self.steps else "start"

    def attempt(self, name: str, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one step and add its row (the detail: what it returned, if a string, or its
        `summary`). A step that raises (fails, or breaks) adds a failed row and re-raises,
        which ends the stage."""
        try:
            value = step(*args, **kwargs)
        except Exception as error:
            detail = (
                str(error) if isinstance(error, StepFailed) else f"{type(error).__name__}: {error}"
            )
            self.steps.append((name, "failed", (detail.splitlines() or [""])[0][:200]))
            raise
        detail = value if isinstance(value, str) else getattr(value, "summary", "")
        self.steps.append((name, "passed", detail))
        return value

    def skip(self, name: str, why: str) -> None:
        self.steps.append((name, "skipped", why))

    def markdown(self) -> str:
        verdict = "green" if self.green else "red"
        rows = "\n".join(f"| {s} | {r} | {d.replace('|', '/')} |" for s, r, d in self.steps)
        return (
            f"# {self.stage} for commit `{self.sha[:12]}`: **{verdict}**\n\n"
            f"| step | result | detail |\n|---|---|---|\n{rows}\n"
        )


@task(cache_policy=NO_CACHE)
def record(report: Report) -> None:
    """The stage's result as an artifact keyed by the stage and the commit."""
    create_markdown_artifact(
        key=report.key,
        markdown=report.markdown(),
        description=f"{report.stage} of commit {report.sha[:12]}",
    )
