"""The paper's table in miniature: accuracy and search behaviour per split and search mode (docs/eval.md).

``evaluate(runner, questions)`` runs every question in the modes off, always and auto through an
:class:`AgentRunner` (in-process :class:`~mmsr_serve.agent.SearchAgent`) or a :class:`ServerRunner`
(a running ``mmsr serve``); :func:`summarize` turns the outcomes into rows, :func:`markdown_report`
into tables and :func:`plot_rows` (matplotlib, the ``eval`` extra) into a plot. The command is
``mmsr eval``.
"""

from typing import TYPE_CHECKING, Any

from mmsr_bench.eval.evaluate import MODES, EvaluationFailed, Outcome, evaluate
from mmsr_bench.eval.report import Row, detail_table, headline_table, markdown_report, summarize
from mmsr_bench.eval.runners import AgentRunner, Runner, RunResult, ServerRunner, final_answer

if TYPE_CHECKING:
    from mmsr_bench.eval.plot import plot_rows

__all__ = [
    "MODES",
    "AgentRunner",
    "EvaluationFailed",
    "Outcome",
    "Row",
    "RunResult",
    "Runner",
    "ServerRunner",
    "detail_table",
    "evaluate",
    "final_answer",
    "headline_table",
    "markdown_report",
    "plot_rows",
    "summarize",
]


def __getattr__(name: str) -> Any:
    if name == "plot_rows":
        from mmsr_bench.eval.plot import plot_rows

        return plot_rows
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
