"""The searcher: Ray Tune's OptunaSearch, multi-objective, told PRUNED for trials without objectives."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

__all__ = ["MultiObjectiveOptuna", "TrialProgress"]


class MultiObjectiveOptuna(OptunaSearch):
    """A trial that ends without objectives (refused by every kind's fit check, stopped early by the
    scheduler, or failed) is told to Optuna as PRUNED instead of a list of Nones, which Optuna refuses
    and would leave the study trial running forever."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is not None and any(result.get(m) is None for m in self.metric):
            result = None
        super().on_trial_complete(trial_id, result, error)


class TrialProgress(Callback):
    """tqdm over finished trials. Tune pickles its callbacks into the experiment state (for restore),
    so the bar is created lazily and never pickled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.bar = total, enabled, None

    def __getstate__(self) -> dict[str, Any]:
        return {"total": self.total, "enabled": self.enabled, "bar": None}

    def _bar(self) -> Any:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc="tune", unit="trial", disable=not self.enabled, leave=False)
        return self.bar

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._bar().update(1)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._bar().set_postfix(errors="yes")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
