"""``mmsr bench standin``: serve a stand-in model or web provider in the foreground.

Only typer is imported with the module (``mmsr --help`` stays fast); the servers when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

Opt = typer.Option
app = typer.Typer(help="Stand-in model and web servers for load benchmarks.", no_args_is_help=True)

FAULTS_HELP = "kind=probability pairs, e.g. 5xx=0.02,malformed=0.01 (docs: mmsr_bench/standins/faults.py): "
LATENCY_HELP = "0, 50ms, 0.05 (s), exp:50ms, lognormal:50ms:0.5, uniform:20ms:80ms or normal:50ms:10ms."


@app.command("model")
def model(
    host: Annotated[str, Opt(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port (0: a free one).", min=0, max=65535)] = 8000,
    latency: Annotated[str, Opt(help="Time to the first token: " + LATENCY_HELP)] = "0",
    tokens_per_s: Annotated[float, Opt(help="Pace of the next tokens (0: all at once).", min=0)] = 0.0,
    mix: Annotated[
        str, Opt(help="Trajectory weights over direct, image, text and image_text.")
    ] = "direct=1,image=1,image_text=1",
    seed: Annotated[int, Opt(help="Seed of the trajectory choice and the latency draws.")] = 0,
    reasoning_words: Annotated[int, Opt(help="Words of reasoning per turn.", min=0)] = 30,
    model_name: Annotated[str, Opt(help="The model id served.")] = "mmsr-standin",
    faults: Annotated[str, Opt(help=FAULTS_HELP + "5xx, 429, echo, malformed, cut, reset, drip, hang.")] = "",
    hang_s: Annotated[float, Opt(help="Seconds a hang fault holds the answer.", min=0)] = 30.0,
    drip_s: Annotated[float, Opt(help="Seconds between events of a drip fault.", min=0)] = 0.5,
) -> None:
    """A vLLM-shaped model server that plays the search protocol (no GPU)."""
    from mmsr_bench.standins._serve import serve_forever
    from mmsr_bench.standins.model import ModelConfig, model_app

    try:
        config = ModelConfig(
            model_name=model_name,
            latency=latency,
            tokens_per_s=tokens_per_s,
            mix=mix,
            seed=seed,
            reasoning_words=reasoning_words,
            faults=faults,
            hang_s=hang_s,
            drip_s=drip_s,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    serve_forever(
        model_app(config),
        host,
        port,
        lambda url: typer.echo(f"model stand-in serving {model_name!r} at {url}/v1"),
    )


@app.command("web")
def web(
    host: Annotated[str, Opt(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port (0: a free one).", min=0, max=65535)] = 8888,
    latency: Annotated[str, Opt(help="Per search: " + LATENCY_HELP)] = "0",
    page_latency: Annotated[str, Opt(help="Per page read, same forms.")] = "0",
    results: Annotated[int, Opt(help="Hits per search.", min=0)] = 5,
    seed: Annotated[int, Opt(help="Seed of the hits and the latency draws.")] = 0,
    faults: Annotated[str, Opt(help=FAULTS_HELP + "5xx, 429, malformed, reset, drip, hang.")] = "",
    hang_s: Annotated[float, Opt(help="Seconds a hang fault holds the answer.", min=0)] = 30.0,
    drip_s: Annotated[float, Opt(help="Seconds a drip fault delays the answer.", min=0)] = 0.5,
) -> None:
    """A SearXNG-shaped search provider (JSON) with the pages its hits link to."""
    from mmsr_bench.standins._serve import serve_forever
    from mmsr_bench.standins.web import WebConfig, web_app

    try:
        config = WebConfig(
            latency=latency,
            page_latency=page_latency,
            results=results,
            seed=seed,
            faults=faults,
            hang_s=hang_s,
            drip_s=drip_s,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    serve_forever(
        web_app(config),
        host,
        port,
        lambda url: typer.echo(f"web stand-in (SearXNG JSON) at {url}: set SEARXNG_BASE_URL={url}"),
    )


if __name__ == "__main__":
    app()
