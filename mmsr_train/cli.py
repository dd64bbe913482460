"""``mmsr train``: tiny checkpoints, GRPO, SFT warm start and search-balanced curation.

    mmsr train tiny-model OUT                                 a tiny random Qwen2.5-VL (tests, smoke runs)
    mmsr train grpo --config run.yaml [--flag value ...]      GRPO with search rollouts (docs/training.md)
    mmsr train sft DATA --model M --output-dir OUT            SFT warm start on protocol trajectories
    mmsr train curate DATA --model M --out OUT.jsonl          label and balance a training set
    mmsr train demo OUT [--minutes 54] [--seed 0]             the embedded default model, from nothing

Flags override the config file; heavy libraries are imported when a command runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mmsr_serve.errors import MMSRError
from mmsr_train.demo import DemoConfig

Opt = typer.Option
# The agent's flags: the names `mmsr serve` uses (old spellings hidden, accepted with a warning).
IndexOpt = Annotated[str | None, Opt(help="Local search corpus folder (docs.jsonl + images).")]
CorpusOpt = Annotated[str | None, Opt(hidden=True, help="Old spelling of --index.")]
ImageSearchOpt = Annotated[list[str] | None, Opt(help="Image search provider; repeat or comma-separate.")]
TextSearchOpt = Annotated[list[str] | None, Opt(help="Text search provider; repeat or comma-separate.")]
MaxTokensOpt = Annotated[int | None, Opt(help="Tokens per model turn (default 2048).")]
MaxNewTokensOpt = Annotated[int | None, Opt(hidden=True, help="Old spelling of --max-tokens.")]
AgentConfigOpt = Annotated[
    Path | None, Opt(help="Agent config file (YAML or JSON, as `mmsr serve --config` takes).")
]
_DEMO = DemoConfig(out="")
"""The demo recipe's defaults, shown by ``mmsr train demo --help``."""
train_app = typer.Typer(
    help="Train search-capable checkpoints (GRPO, SFT), curate data.", no_args_is_help=True
)


@train_app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Output folder for the checkpoint.")],
    seed: Annotated[int, Opt(help="Initialisation seed.")] = 0,
) -> None:
    """Write a tiny, randomly initialised Qwen2.5-VL checkpoint with its own tokenizer (offline)."""
    from mmsr_train.tiny_model import build_tiny_qwen2_5_vl

    path = build_tiny_qwen2_5_vl(out, seed=seed)
    typer.echo(f"tiny checkpoint written to {path}")


@train_app.command("grpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def grpo(
    ctx: typer.Context,
    config: Annotated[Path | None, Opt(help="YAML or JSON run config (keys as the flags, with _).")] = None,
    model: Annotated[str | None, Opt(help="Checkpoint folder to start from.")] = None,
    train_data: Annotated[str | None, Opt(help="Training set: JSONL or FVQA parquet.")] = None,
    output_dir: Annotated[str | None, Opt(help="Where checkpoints go; the final one at its root.")] = None,
    eval_data: Annotated[str | None, Opt(help="Held-out set evaluated every --eval-steps.")] = None,
    eval_fraction: Annotated[float | None, Opt(help="Hold out this share of the training set.")] = None,
    eval_steps: Annotated[int | None, Opt(help="Steps between evaluations (default 50).")] = None,
    index: IndexOpt = None,
    corpus: CorpusOpt = None,
    image_search: ImageSearchOpt = None,
    text_search: TextSearchOpt = None,
    page_reader: Annotated[
        str | None, Opt(help="Page reader of web text search: local, jina or none.")
    ] = None,
    reader: Annotated[str | None, Opt(hidden=True, help="Old spelling of --page-reader.")] = None,
    summarizer_base_url: Annotated[str | None, Opt(help="OpenAI-compatible summarizer URL.")] = None,
    summarizer_model: Annotated[str | None, Opt(help="Summarizer model name.")] = None,
    search_cache: Annotated[str | None, Opt(help="SQLite search cache file.")] = None,
    search_cache_mode: Annotated[str | None, Opt(help="readwrite, replay or refresh.")] = None,
    prompt_pack: Annotated[str | None, Opt(help="Prompt pack file (default: the project's).")] = None,
    num_generations: Annotated[int | None, Opt(help="Rollouts per prompt (default 8).")] = None,
    prompts_per_device: Annotated[int | None, Opt(help="Prompts per device per step (default 1).")] = None,
    learning_rate: Annotated[float | None, Opt(help="Default 2e-6.")] = None,
    beta: Annotated[float | None, Opt(help="KL coefficient (default 0.001).")] = None,
    loss_type: Annotated[str | None, Opt(help="dapo (default), grpo, bnpo or dr_grpo.")] = None,
    epochs: Annotated[float | None, Opt(help="Default 1.")] = None,
    max_steps: Annotated[int | None, Opt(help="Stop after this many steps.")] = None,
    max_tokens: MaxTokensOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    max_total_tokens: Annotated[int | None, Opt(help="Tokens after the first prompt (default 8192).")] = None,
    reward_mode: Annotated[str | None, Opt(help="em (default) or subem.")] = None,
    device: Annotated[str | None, Opt(help="auto, cpu or cuda.")] = None,
    use_vllm: Annotated[bool | None, Opt(help="Generate with vLLM (GPU).")] = None,
    vllm_mode: Annotated[str | None, Opt(help="colocate or server.")] = None,
    vllm_server_base_url: Annotated[str | None, Opt(help="vLLM server URL (server mode).")] = None,
    save_steps: Annotated[int | None, Opt(help="Steps between checkpoints (default 100).")] = None,
    seed: Annotated[int | None, Opt(help="Default 0.")] = None,
    report_to: Annotated[str | None, Opt(help="none (default), tensorboard, wandb or trackio.")] = None,
    resume_from_checkpoint: Annotated[
        str | None, Opt(help="A checkpoint-N folder to resume from, or 'latest' (in --output-dir).")
    ] = None,
) -> None:
    """GRPO with multi-turn search rollouts through the serving loop (TRL).

    The run config file holds the training fields and the agent's (as ``mmsr serve`` reads them:
    ``index``, ``text_search``, ``providers``, ``max_turns`` ...) side by side. Any other
    ``trl.GRPOConfig`` option goes in the file or as a flag of its own name (``--epsilon-high 0.28``,
    ``--save-total-limit 3``); TRL validates it."""
    overrides: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("ctx", "config")}
    resume = overrides.pop("resume_from_checkpoint")
    overrides.update(extra_options(ctx.args))
    from mmsr_train.config import GRPORunConfig

    try:
        run = GRPORunConfig.load(config, **overrides)
        _quiet_experimental()
        from mmsr_train.grpo import train_grpo

        summary = train_grpo(run, resume_from_checkpoint=True if resume == "latest" else resume)
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _summary(summary)
    typer.echo(f"serve it with: mmsr serve --backend hf --model {summary.output_dir}")


def extra_options(args: list[str]) -> dict[str, Any]:
    """``--name value`` / ``--name=value`` / ``--flag`` / ``--no-flag`` pairs as ``{name: value}``
    (values read as YAML: numbers, booleans, lists); anything else is a usage error."""
    import yaml

    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("--") or len(word) < 3:
            raise typer.BadParameter(f"unexpected argument {word!r}")
        name, eq, value = word[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            elif name.startswith("no-"):
                name, value = name[3:], "false"
            else:
                value = "true"
        out[name.replace("-", "_")] = yaml.safe_load(value)
        i += 1
    return out


@train_app.command("sft")
def sft(
    data: Annotated[Path, typer.Argument(help="JSONL of trajectories: image, question, turns.")],
    model: Annotated[str, Opt(help="Checkpoint folder to start from.")],
    output_dir: Annotated[str, Opt(help="Where the checkpoint goes.")],
    config: AgentConfigOpt = None,
    index: IndexOpt = None,
    corpus: CorpusOpt = None,
    image_search: ImageSearchOpt = None,
    text_search: TextSearchOpt = None,
    page_reader: Annotated[
        str | None, Opt(help="Page reader of web text search: local, jina or none.")
    ] = None,
    summarizer_base_url: Annotated[str | None, Opt(help="OpenAI-compatible summarizer URL.")] = None,
    summarizer_model: Annotated[str | None, Opt(help="Summarizer model name.")] = None,
    search_cache: Annotated[str | None, Opt(help="SQLite search cache file.")] = None,
    search_cache_mode: Annotated[str | None, Opt(help="readwrite, replay or refresh.")] = None,
    prompt_pack: Annotated[str | None, Opt(help="Prompt pack file.")] = None,
    learning_rate: Annotated[float, Opt(help="Learning rate.")] = 1e-5,
    epochs: Annotated[float, Opt(help="Epochs.")] = 1.0,
    max_steps: Annotated[int, Opt(help="Stop after this many steps (-1: epochs).")] = -1,
    batch_size: Annotated[int, Opt(help="Trajectories per device per step.")] = 1,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """SFT warm start on protocol trajectories, masked like GRPO (model turns only)."""
    from mmsr_train.sft import SFTRunConfig, train_sft

    try:
        agent = _agent(
            config,
            start=model,
            index=index,
            corpus=corpus,
            image_search=image_search,
            text_search=text_search,
            page_reader=page_reader,
            summarizer_base_url=summarizer_base_url,
            summarizer_model=summarizer_model,
            search_cache=search_cache,
            search_cache_mode=search_cache_mode,
            prompt_pack=prompt_pack,
        )
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc
    run = SFTRunConfig(
        model=model,
        data=str(data),
        output_dir=output_dir,
        agent=agent,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        device=device,
    )
    try:
        summary = train_sft(run)
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _summary(summary)


@train_app.command("curate")
def curate(
    data: Annotated[Path, typer.Argument(help="Questions to label: JSONL or FVQA parquet.")],
    out: Annotated[Path, Opt(help="The balanced set, written as JSONL (images beside it).")],
    model: Annotated[str, Opt(help="Checkpoint folder (hf) or served model name (openai).")],
    backend: Annotated[str, Opt(help="hf (in-process) or openai (any OpenAI-compatible server).")] = "hf",
    backend_url: Annotated[list[str] | None, Opt(help="Model server URL (openai); repeatable.")] = None,
    config: AgentConfigOpt = None,
    index: IndexOpt = None,
    corpus: CorpusOpt = None,
    image_search: ImageSearchOpt = None,
    text_search: TextSearchOpt = None,
    search_cache: Annotated[str | None, Opt(help="SQLite search cache file.")] = None,
    search_cache_mode: Annotated[str | None, Opt(help="readwrite, replay or refresh.")] = None,
    prompt_pack: Annotated[
        str | None, Opt(help="Prompt pack file (default: the checkpoint's, else the project's).")
    ] = None,
    k: Annotated[int, Opt(help="Rollouts per question and setting.")] = 8,
    min_correct: Annotated[int, Opt(help="Correct rollouts that settle a label.")] = 1,
    search_required_ratio: Annotated[float, Opt(help="Share of search-required questions.")] = 0.68,
    size: Annotated[int | None, Opt(help="Questions in the balanced set (default: as many as fit).")] = None,
    off_mode: Annotated[str, Opt(help="protocol (0 searches allowed) or plain (bare question).")] = (
        "protocol"
    ),
    temperature: Annotated[float, Opt(help="Sampling temperature of the rollouts.")] = 1.0,
    max_tokens: MaxTokensOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    concurrency: Annotated[int, Opt(help="Rollouts in flight.")] = 4,
    seed: Annotated[int, Opt(help="Sampling seed of the balanced set.")] = 0,
) -> None:
    """Roll out k times with search off and on, label questions, write a search-balanced set."""
    import asyncio

    from mmsr_bench.data import load_samples, write_jsonl
    from mmsr_serve.agent.agent import SearchAgent
    from mmsr_serve.agent.loop import Sampling
    from mmsr_serve.agent.prompts import load_pack
    from mmsr_train.curate import balance, label_samples, report
    from mmsr_train.rollout import build_tools

    try:
        samples = load_samples(data)
        if backend not in ("hf", "openai"):
            raise typer.BadParameter(f"backend must be hf or openai, got {backend!r}")
        config_ = _agent(
            config,
            backend=backend,
            backend_urls=backend_url,
            model=model,
            index=index,
            corpus=corpus,
            image_search=image_search,
            text_search=text_search,
            search_cache=search_cache,
            search_cache_mode=search_cache_mode,
            max_tokens=max_tokens,
            max_new_tokens=max_new_tokens,
            prompt_pack=prompt_pack,
        )
        tools = build_tools(config_)
        pack_file = config_.prompt_pack_file()  # the flag, else the checkpoint's own pack
        agent = SearchAgent(
            config_.build_backend(),
            image_search=tools.image,
            text_search=tools.text,
            limits=config_.limits(recover=False),
            pack=load_pack(pack_file) if pack_file else None,
        )
        labelled = asyncio.run(
            label_samples(
                samples,
                agent,
                k=k,
                min_correct=min_correct,
                off_mode="plain" if off_mode == "plain" else "protocol",
                sampling=Sampling(temperature=temperature),
                concurrency=concurrency,
            )
        )
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc
    chosen = balance(labelled, search_required_ratio=search_required_ratio, size=size, seed=seed)
    summary = report(labelled, chosen)
    typer.echo("labels: " + ", ".join(f"{k}={v}" for k, v in summary.labels.items()))
    solved = len(labelled) - summary.labels.get("unsolved", 0)
    why = (
        f"the model solved {solved} of {len(labelled)} questions in {k} rollouts each; check the"
        f" prompt pack ({pack_file or 'the project default'}), the model, --max-tokens and the answers"
    )
    if not chosen:
        if solved:  # labelled, but not in the proportions asked for
            why = (
                f"no balanced set with {search_required_ratio:.0%} search-required questions can be"
                f" drawn from {summary.labels.get('search_required', 0)} search-required and"
                f" {summary.labels.get('search_free', 0)} search-free ones (--search-required-ratio)"
            )
        typer.secho(f"error: nothing to write: {why}", fg="red", err=True)
        raise typer.Exit(1)
    if solved < _FEW_SOLVED * len(labelled):
        typer.secho(f"warning: a near-empty set: {why}", fg="yellow", err=True)
    write_jsonl(chosen, out)
    typer.echo(f"balanced set: {len(chosen)} questions ({summary.selected}) written to {out}")


@train_app.command("demo")
def demo(
    out: Annotated[Path, typer.Argument(help="Output folder: world/, sft-values/, sft/, grpo/, train.log.")],
    minutes: Annotated[float, Opt(help="Wall-clock budget of SFT + GRPO.")] = _DEMO.minutes,
    seed: Annotated[int, Opt(help="World, initialisation and data-order seed.")] = _DEMO.seed,
    grpo_share: Annotated[
        float, Opt(help="Share of --minutes given to GRPO (0: SFT only).")
    ] = _DEMO.grpo_share,
    stream: Annotated[int, Opt(help="Never-repeating generated entities in the world.")] = _DEMO.stream,
    world: Annotated[Path | None, Opt(help="Reuse this world folder instead of building OUT/world.")] = None,
    known_share: Annotated[
        float, Opt(help="Share of auto-mode SFT batches answering known entities directly.")
    ] = _DEMO.known_share,
    stream_share: Annotated[
        float, Opt(help="Share of search SFT batches drawn from the stream entities.")
    ] = _DEMO.stream_share,
    always_share: Annotated[
        float, Opt(help="Share of SFT batches in the always (RAG workflow) search mode.")
    ] = _DEMO.always_share,
    value_weight: Annotated[
        float, Opt(help="SFT loss weight of query and answer tokens (protocol tokens weigh 1).")
    ] = _DEMO.value_weight,
    decision_minutes: Annotated[
        float, Opt(help="Minutes of a second SFT stage with the reasoning weighted like the values.")
    ] = _DEMO.decision_minutes,
    first_turns: Annotated[
        float, Opt(help="Share of first-stage SFT batches cut after the first turn (the search decision).")
    ] = _DEMO.first_turns,
    decision_first_turns: Annotated[
        float, Opt(help="Share of decision-stage SFT batches cut after the first turn.")
    ] = _DEMO.decision_first_turns,
    grpo_known_share: Annotated[
        float | None,
        Opt(
            help="Share of GRPO questions on known entities, at most the train split's "
            "(default: as they come)."
        ),
    ] = _DEMO.grpo_known_share,
    init: Annotated[
        Path | None, Opt(help="Continue from this checkpoint instead of a new tiny model.")
    ] = None,
    learning_rate: Annotated[
        float, Opt(help="Peak learning rate of the first SFT stage.")
    ] = _DEMO.learning_rate,
    threads: Annotated[int, Opt(help="torch threads.")] = _DEMO.threads,
) -> None:
    """Train the embedded default model: world, tiny model, SFT warm start, GRPO (docs/demo.md)."""
    from mmsr_train.demo import run_demo

    _quiet_experimental()
    try:
        config = DemoConfig(
            out=str(out),
            seed=seed,
            minutes=minutes,
            grpo_share=grpo_share,
            stream=stream,
            world=str(world) if world else None,
            known_share=known_share,
            stream_share=stream_share,
            always_share=always_share,
            value_weight=value_weight,
            decision_minutes=decision_minutes,
            first_turns=first_turns,
            decision_first_turns=decision_first_turns,
            grpo_known_share=grpo_known_share,
            init=str(init) if init else None,
            learning_rate=learning_rate,
            threads=threads,
        )
    except ValueError as exc:  # the budget's parts do not fit (a sentence, not a traceback)
        raise typer.BadParameter(str(exc)) from exc
    final = run_demo(config)
    typer.echo(f"demo checkpoint at {final}")


_FEW_SOLVED = 0.1  # curation: below this share of solved questions the set is called near-empty


def _agent(config: Path | None, *, start: str | None = None, **flags: Any) -> Any:
    """The agent configuration of a training command: what the ``start`` checkpoint recorded (its
    pack, limits and image sizes), ``config`` (a file as ``mmsr serve --config`` takes), the
    serving environment variables, then the flags; loaded as serving loads it."""
    from mmsr_serve.config import AgentConfig, read_config_file
    from mmsr_train.config import starting_point, training_env

    file_values = read_config_file(config) if config is not None else {}
    return AgentConfig.from_sources({**starting_point(start), **file_values}, env=training_env(), **flags)


def _summary(summary: Any) -> None:
    typer.echo(f"trained {summary.steps} steps; checkpoint at {summary.output_dir}")
    shown = ("loss", "reward", "reward/accuracy", "reward/format", "search/ratio", "turns/mean")
    parts = [f"{k}={summary.logs[k]:.4g}" for k in shown if isinstance(summary.logs.get(k), int | float)]
    if parts:
        typer.echo("last step: " + ", ".join(parts))
    if summary.final_eval:
        from mmsr_bench.eval.report import headline_table

        typer.echo(f"held-out questions after training ({summary.output_dir}/final_eval/report.md):")
        typer.echo(headline_table(summary.final_eval))


def _quiet_experimental() -> None:
    """TRL warns that custom generation is experimental; we pin TRL and test what we rely on."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
