"""``mmsr eval``: question sets through a model in every search mode -> table, plot and outcomes.

Only typer is imported with the module (``mmsr --help`` stays fast); the rest when the command runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from mmsr_bench.eval.evaluate import Judge, Outcome
    from mmsr_bench.eval.runners import Runner
    from mmsr_bench.world.questions import Question

Opt = typer.Option
DEFAULT_OUT = Path("eval-results")


@dataclass(frozen=True)
class Target:
    """Where the runs go: a running mmsr server, or an agent built here around a backend."""

    server: str | None = None
    api_key: str | None = None
    backend: str = "hf"
    backend_url: str = "http://127.0.0.1:8000/v1"
    index: Path | None = None
    prompt_pack: Path | None = None
    device: str = "auto"
    temperature: float = 0.0
    max_new_tokens: int | None = None

    async def runner(self, model: str | None) -> Runner:
        from mmsr_bench.eval.runners import ServerRunner

        if self.server is not None:
            name = model or await served_model(self.server, self.api_key)
            return ServerRunner(
                self.server,
                name,
                api_key=self.api_key,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
            )
        if not model:
            raise ValueError("--model is required (a checkpoint for hf, a model name for openai)")
        return self._agent_runner(model)

    def _agent_runner(self, model: str) -> Runner:
        """An in-process agent, assembled by the serving builders (:mod:`mmsr_serve.config`)."""
        from mmsr_bench.eval.runners import AgentRunner
        from mmsr_serve.agent import SearchAgent, load_pack
        from mmsr_serve.config import AgentConfig

        config = AgentConfig.from_sources(
            {},
            env={},
            backend=self.backend,
            backend_urls=[self.backend_url],
            model=model,
            device=self.device,
            index=self.index,
            prompt_pack=self.prompt_pack,
            max_tokens=self.max_new_tokens,
        )
        engine = config.build_backend()
        tools = config.build_search()
        if tools.local is not None:
            tools.local.ensure_index()
        pack_file = config.prompt_pack_file()
        agent = SearchAgent(
            engine,
            image_search=tools.image,
            text_search=tools.text,
            limits=config.limits(),
            pack=load_pack(pack_file) if pack_file else None,
        )
        return AgentRunner(agent, config.model_id, temperature=self.temperature)


async def served_model(server: str, api_key: str | None) -> str:
    """The first model a server lists."""
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=server, api_key=api_key or "EMPTY") as client:
        page = await client.models.list()
    if not page.data:
        raise ValueError(f"{server} serves no model")
    return page.data[0].id


def read_question_set(path: Path) -> list[Question]:
    """A question set: JSONL (:mod:`mmsr_bench.world.questions`), or a parquet file in the layouts
    :mod:`mmsr_bench.data` reads (the released FVQA files, ``.parquet`` or ``.pq``), whose split is
    each row's ``data_source`` (FVQA-test's parts) or the file's name, its images as data URLs."""
    from mmsr_bench.world.questions import Question, read_questions

    if path.suffix not in (".parquet", ".pq"):
        return read_questions(path)
    from mmsr_bench.data import DataError, load_samples
    from mmsr_serve.images import bytes_data_url

    try:
        samples = load_samples(path)
    except DataError as exc:
        raise ValueError(str(exc)) from exc
    return [
        Question(
            id=s.id,
            question=s.question,
            answers=s.answers,
            split=s.data_source or path.stem,
            image=bytes_data_url(data, where=f"{path}, {s.id}") if (data := s.image_bytes()) else None,
            known=s.known,
            extra={"category": s.category} if s.category else {},
        )
        for s in samples
    ]


def load_question_sets(paths: Sequence[Path], splits: Sequence[str], limit: int | None) -> list[Question]:
    """The questions of every file, kept to ``splits`` (if any), the first ``limit`` per split."""
    questions = [q for path in paths for q in read_question_set(path) if not splits or q.split in splits]
    if limit is None:
        return questions
    taken: dict[str, int] = {}
    kept = []
    for q in questions:
        taken[q.split] = taken.get(q.split, 0) + 1
        if taken[q.split] <= limit:
            kept.append(q)
    return kept


async def run_evaluation(
    target: Target,
    models: Sequence[str | None],
    questions: Sequence[Question],
    modes: Sequence[str],
    *,
    concurrency: int = 4,
    progress: bool = True,
    judge: Judge | None = None,
) -> list[Outcome]:
    """Evaluate each model in turn (one runner at a time, closed after its runs)."""
    from mmsr_bench.eval.evaluate import evaluate

    outcomes: list[Outcome] = []
    for model in models or [None]:
        runner = await target.runner(model)
        try:
            outcomes += await evaluate(
                runner, questions, modes, concurrency=concurrency, progress=progress, judge=judge
            )
        finally:
            await runner.aclose()
    return outcomes


def write_results(
    out: Path, outcomes: Sequence[Outcome], *, command: str = "", title: str = "", judge: str | None = None
) -> str:
    """outcomes.jsonl, summary.json, report.md and plot.png under ``out``; returns the report.

    Without matplotlib (the ``eval`` extra) the plot is skipped with a warning on stderr.
    """
    from mmsr_bench.eval.report import markdown_report, summarize

    out.mkdir(parents=True, exist_ok=True)
    with (out / "outcomes.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(o.to_json(), ensure_ascii=False) + "\n" for o in outcomes)
    rows = summarize(outcomes)
    (out / "summary.json").write_text(json.dumps([r.to_json() for r in rows], indent=1) + "\n")
    report = markdown_report(rows, command=command or None, judge=judge)
    (out / "report.md").write_text(report, encoding="utf-8")
    if importlib.util.find_spec("matplotlib") is None:
        typer.echo("plot skipped: matplotlib is not installed (pip install 'mmsr[eval]')", err=True)
    else:
        from mmsr_bench.eval.plot import plot_rows

        plot_rows(rows, out / "plot.png", title=title)
    return report


def _command(questions: Sequence[Path], options: dict[str, object]) -> str:
    """The ``mmsr eval`` line that reproduces a run (options left at their defaults omitted)."""
    words = ["mmsr", "eval", *(str(p) for p in questions)]
    for name, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            words += [f"--{name}", str(item)]
    return " ".join(shlex.quote(w) for w in words)


def eval_command(
    questions: Annotated[
        list[Path], typer.Argument(help="Question set files: JSONL, or FVQA-layout parquet.", exists=True)
    ],
    model: Annotated[
        list[str] | None, Opt(help="Checkpoint (hf), model name (openai, --server); repeat to compare.")
    ] = None,
    backend: Annotated[Literal["hf", "openai"], Opt(help="In-process model backend.")] = "hf",
    backend_url: Annotated[str, Opt(help="Model server for --backend openai.")] = Target.backend_url,
    index: Annotated[Path | None, Opt(help="Corpus folder of the local index (in-process runs).")] = None,
    server: Annotated[str | None, Opt(help="Evaluate a running mmsr server (its /v1 URL) instead.")] = None,
    api_key: Annotated[str | None, Opt(help="Key for --server.", envvar="MMSR_API_KEY")] = None,
    mode: Annotated[list[str] | None, Opt(help="Search modes (default: off, always, auto).")] = None,
    split: Annotated[list[str] | None, Opt(help="Keep only these splits.")] = None,
    limit: Annotated[int | None, Opt(help="At most this many questions per split.", min=1)] = None,
    concurrency: Annotated[int, Opt(help="Runs in flight at once.", min=1)] = 4,
    temperature: Annotated[float, Opt(help="Sampling temperature (0: greedy).")] = 0.0,
    max_new_tokens: Annotated[
        int | None, Opt(help="Tokens per model turn (default: the server's or the checkpoint's).", min=1)
    ] = None,
    device: Annotated[str, Opt(help="hf only: cpu, cuda, cuda:N or auto.")] = "auto",
    prompt_pack: Annotated[Path | None, Opt(help="Prompt pack (default: the checkpoint's).")] = None,
    out: Annotated[
        Path, Opt(help="Folder for report.md, plot.png, summary.json, outcomes.jsonl.")
    ] = DEFAULT_OUT,
    title: Annotated[str, Opt(help="Plot title.")] = "",
    progress: Annotated[bool, Opt(help="Show a progress bar.")] = True,
    judge_model: Annotated[
        str | None, Opt(help="Also grade answers with this LLM judge (the paper's accuracy).")
    ] = None,
    judge_url: Annotated[str | None, Opt(help="The judge's OpenAI-compatible /v1 URL.")] = None,
    judge_api_key: Annotated[
        str | None, Opt(help="Key for --judge-url.", envvar="MMSR_JUDGE_API_KEY")
    ] = None,
) -> None:
    """Evaluate question sets in the search modes off, always and auto: the paper's table.

    Reports EM accuracy (and the judge's, with --judge-model), search ratio, searches and turns
    per question for every split, as markdown (printed, and in OUT/report.md) and a plot (OUT/plot.png).
    """
    from mmsr_bench.eval.evaluate import MODES, EvaluationFailed
    from mmsr_serve.errors import MMSRError

    try:
        items = load_question_sets(questions, split or [], limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not items:
        raise typer.BadParameter("no questions to evaluate")
    if server is None and index is None:
        typer.echo("warning: no --index, so the model gets no search tools", err=True)
    if (judge_model is None) != (judge_url is None):
        raise typer.BadParameter("--judge-model and --judge-url go together")
    judge = None
    if judge_model is not None:
        from mmsr_bench.judge import LLMJudge

        judge = LLMJudge(judge_model, judge_url, judge_api_key)
    where = (server, api_key, backend, backend_url, index, prompt_pack, device)
    target = Target(*where, temperature=temperature, max_new_tokens=max_new_tokens)
    chosen: dict[str, object] = {"backend": backend if server is None else None, "model": model}
    chosen |= {"index": index, "server": server, "mode": mode, "split": split, "limit": limit}
    chosen |= {"backend-url": backend_url if backend == "openai" and server is None else None}
    chosen |= {"device": None if device == "auto" else device, "prompt-pack": prompt_pack}
    chosen["temperature"] = temperature or None
    chosen["max-new-tokens"] = max_new_tokens
    chosen |= {"judge-model": judge_model, "judge-url": judge_url}
    command = _command(questions, {k: v for k, v in chosen.items() if v})
    try:
        outcomes = asyncio.run(
            run_evaluation(
                target,
                model or [],
                items,
                mode or list(MODES),
                concurrency=concurrency,
                progress=progress,
                judge=judge,
            )
        )
    except (EvaluationFailed, MMSRError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(write_results(out, outcomes, command=command, title=title, judge=judge_model))
    typer.echo(f"results written to {out}/")
