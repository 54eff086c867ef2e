"""``plot_log``: a training run's loss (train and held-out) and learning rate as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import json
import os
from typing import Iterable, List, Mapping, Union

__all__ = ["plot_log", "read_log"]


def read_log(log: Union[str, os.PathLike, Iterable[Mapping[str, object]]]) -> List[Mapping[str, object]]:
    """The steps of a run: ``Program.run``'s dicts as they are, or the lines of an ``llm-run --log-json`` file."""
    if isinstance(log, (str, os.PathLike)):
        with open(log) as f:
            return [json.loads(line) for line in f if line.strip()]
    return list(log)


def plot_log(log: Union[str, os.PathLike, Iterable[Mapping[str, object]]], path: Union[str, os.PathLike],
             title: str = "") -> str:
    """Draws the train loss per step, the eval loss where the run measured it (``eval_loss``) and, below, the
    learning rate (``lr``), and writes the figure to ``path`` (PNG, or any format matplotlib knows from the
    suffix). Returns ``path``. Raises ValueError for a log without steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = read_log(log)
    if not steps:
        raise ValueError("plot_log: the log has no steps")
    x = [int(s["step"]) for s in steps]
    evals = [(int(s["step"]), float(s["eval_loss"])) for s in steps if s.get("eval_loss") is not None]
    lrs = [(int(s["step"]), float(s["lr"])) for s in steps if s.get("lr") is not None]
    fig, axes = plt.subplots(2 if lrs else 1, 1, sharex=True, figsize=(7, 5 if lrs else 3.5), squeeze=False)
    ax = axes[0][0]
    ax.plot(x, [float(s["loss"]) for s in steps], label="train loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", linewidth=1.2)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    if lrs:
        axes[1][0].plot(*zip(*lrs), color="tab:green", linewidth=1.2)
        axes[1][0].set_ylabel("learning rate")
        axes[1][0].grid(alpha=0.3)
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
    return os.fspath(path)
