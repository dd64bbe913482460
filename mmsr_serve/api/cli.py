"""``mmsr serve`` (run the server) and ``mmsr chat`` (talk to a running one from a terminal).

Both are plain typer command functions; ``mmsr_serve.cli`` registers them. Every ``serve`` flag
defaults to "unset", so the config file and ``MMSR_*`` variables fill what the command line leaves
out (see :mod:`mmsr_serve.api.settings`). ``python -m mmsr_serve.api.cli serve ...`` works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from mmsr_serve.errors import ConfigError, MMSRError

if TYPE_CHECKING:  # the CLI's help stays fast: nothing heavy at import (tests/test_cli.py)
    from mmsr_serve.api.settings import Settings
    from mmsr_serve.default_model import DemoWorldBuild

Opt = typer.Option


def serve(
    config: Annotated[Path | None, Opt(help="YAML or JSON config file (env MMSR_CONFIG).")] = None,
    backend: Annotated[
        str | None, Opt(help="openai (any OpenAI-compatible server) or hf (in-process).")
    ] = None,
    backend_url: Annotated[
        list[str] | None, Opt(help="Model server base URL; repeat for several replicas.")
    ] = None,
    backend_api_key: Annotated[str | None, Opt(help="API key sent to the model server.")] = None,
    model: Annotated[str | None, Opt(help="Served model name (openai) or checkpoint folder (hf).")] = None,
    served_model_name: Annotated[str | None, Opt(help="Model id clients use (default: --model).")] = None,
    device: Annotated[str | None, Opt(help="hf backend: cpu, cuda, cuda:N or auto.")] = None,
    index: Annotated[Path | None, Opt(help="Local search corpus folder (docs.jsonl + images).")] = None,
    index_path: Annotated[
        Path | None, Opt(help="Local index file (default: inside the corpus folder; for read-only corpora).")
    ] = None,
    index_min_score: Annotated[
        float | None, Opt(help="Local text search: drop hits under this share of the best score (0.25).")
    ] = None,
    search_cache: Annotated[Path | None, Opt(help="SQLite file caching every search, or 'off'.")] = None,
    search_cache_mode: Annotated[str | None, Opt(help="readwrite, replay or refresh.")] = None,
    image_search: Annotated[
        str | None, Opt(help="Image search providers in fallback order: serpapi-lens,local.")
    ] = None,
    text_search: Annotated[
        str | None, Opt(help="Text search providers in fallback order, e.g. serpapi,duckduckgo.")
    ] = None,
    page_reader: Annotated[str | None, Opt(help="Web pages read by: local (default), jina or none.")] = None,
    summarizer_base_url: Annotated[str | None, Opt(help="OpenAI-compatible summarizer server.")] = None,
    summarizer_model: Annotated[str | None, Opt(help="Summarizer model (default: BM25 extracts).")] = None,
    public_base_url: Annotated[
        str | None, Opt(help="This server's public URL, for reverse image search of uploads.")
    ] = None,
    prompt_pack: Annotated[Path | None, Opt(help="Prompt pack file (JSON or YAML).")] = None,
    host: Annotated[str | None, Opt(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, Opt(help="Port (default 8080).")] = None,
    workers: Annotated[
        int | None, Opt(help="Server processes (default 1); needs a model server (--backend openai).")
    ] = None,
    api_key: Annotated[list[str] | None, Opt(help="Accepted client API key; repeatable.")] = None,
    max_turns: Annotated[int | None, Opt(help="Model turns per run (default 3).")] = None,
    max_image_searches: Annotated[int | None, Opt(help="Image searches per run (default 1).")] = None,
    max_text_searches: Annotated[int | None, Opt(help="Text searches per run (default 2).")] = None,
    top_k: Annotated[int | None, Opt(help="Results per search (default 5).")] = None,
    max_tokens: Annotated[int | None, Opt(help="Tokens per model turn (default 2048).")] = None,
    max_images: Annotated[int | None, Opt(help="Images per request (default 4).")] = None,
    max_messages: Annotated[int | None, Opt(help="Messages per request (default 2048).")] = None,
    max_content_parts: Annotated[
        int | None, Opt(help="Content parts over a request's messages (default 4096).")
    ] = None,
    max_image_bytes: Annotated[int | None, Opt(help="Bytes per image (default 20 MiB).")] = None,
    max_image_pixels: Annotated[int | None, Opt(help="Pixels per image, larger ones are downscaled.")] = None,
    allow_image_urls: Annotated[bool | None, Opt(help="Fetch http(s) image URLs (default yes).")] = None,
    max_body_bytes: Annotated[int | None, Opt(help="Request body limit (default 32 MiB).")] = None,
    max_n: Annotated[int | None, Opt(help="Largest n a request may ask for (default 4).")] = None,
    max_concurrent_requests: Annotated[int | None, Opt(help="Beyond this, 429 (default 64).")] = None,
    request_timeout: Annotated[float | None, Opt(help="Seconds per request (default 600).")] = None,
    shutdown_timeout: Annotated[
        float | None, Opt(help="On SIGTERM, seconds for requests in flight to finish (default 30).")
    ] = None,
    log_level: Annotated[str | None, Opt(help="critical, error, warning, info or debug.")] = None,
) -> None:
    """Serve the search loop behind OpenAI-compatible /v1/chat/completions and /v1/responses.

    With no model configured, serves the embedded default (a tiny searching model) over the demo
    world, generated on first use into ~/.cache/mmsr (docs/demo.md).

    Web search provider keys come from the environment (SERPAPI_API_KEY, BRAVE_API_KEY, ...) or the
    config file, never from flags: see docs/search.md.
    """
    overrides: dict[str, Any] = dict(locals())
    overrides.pop("config")
    import uvicorn

    from mmsr_serve.api.app import create_app
    from mmsr_serve.api.settings import Settings

    overrides["backend_urls"] = overrides.pop("backend_url")
    overrides["api_keys"] = overrides.pop("api_key")
    overrides["request_timeout_s"] = overrides.pop("request_timeout")
    overrides["shutdown_timeout_s"] = overrides.pop("shutdown_timeout")
    try:
        settings = Settings.load(config, **overrides).with_default_model(build=False)
        check_port(settings.host, settings.port)
        world = _start_demo_world(settings)
        try:
            if settings.workers > 1:
                from mmsr_serve.api.workers import serve_workers

                if world is not None:
                    world.wait()
                serve_workers(settings, config, overrides)
                return
            # A first start generates the demo world in a child process while the model loads here.
            loaded = settings.build_backend() if world is not None else None
            if world is not None:
                world.wait()
            app = create_app(settings, backend=loaded)
        except BaseException:
            if world is not None:
                world.cancel()
            raise
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc
    uvicorn.run(app, **uvicorn_options(settings))


def _start_demo_world(settings: Settings) -> DemoWorldBuild | None:
    """The demo world's generation, started when the settings serve it and it is not there yet."""
    from mmsr_serve import default_model

    demo = default_model.demo_world_dir() / "corpus"
    if settings.index is None or Path(settings.index) != demo:
        return None
    return default_model.start_demo_world()


def check_port(host: str, port: int) -> None:
    """A port already taken is a sentence before anything loads (uvicorn would say it after
    the model and the index were up)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror} (another server there? pick one with --port)"
            ) from None


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """uvicorn's logging configuration, with the ``mmsr`` loggers on its handler at ``level``;
    with ``fmt`` "json" the access lines go out bare, one JSON object per line, on stdout."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mmsr"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    if fmt == "json":
        config["formatters"]["mmsr_json"] = {"format": "%(message)s"}
        config["handlers"]["mmsr_json"] = {
            "formatter": "mmsr_json",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        }
        access = {"handlers": ["mmsr_json"], "level": level.upper(), "propagate": False}
        config["loggers"]["mmsr.access"] = access
    return config


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """What ``uvicorn.run`` is given, one worker or several."""
    from mmsr_serve.api.protocol import protocol_options

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # streams get shutdown_timeout_s, then their farewell; whatever is left is cancelled
        "timeout_graceful_shutdown": settings.shutdown_timeout_s + 2,
        "limit_concurrency": settings.max_connections,
        "access_log": False,  # mmsr.access writes one line per request (api/access.py)
        "log_config": log_config(settings.log_level, settings.log_format),
        **protocol_options(settings.client_timeout_s),  # headers within client_timeout_s
    }


def chat(
    question: Annotated[
        str | None, typer.Argument(help="The question; without one, an interactive session opens.")
    ] = None,
    image: Annotated[Path | None, Opt(help="An image file to ask about.")] = None,
    url: Annotated[str, Opt(envvar="MMSR_URL", help="The server's base URL.")] = "http://127.0.0.1:8080/v1",
    api_key: Annotated[str, Opt(envvar="MMSR_API_KEY", help="API key of the server.")] = "EMPTY",
    model: Annotated[str | None, Opt(help="Model id (default: the server's first).")] = None,
    search_mode: Annotated[str, Opt(help="auto, always or off.")] = "auto",
    timeout: Annotated[float, Opt(help="Seconds to wait for the answer.")] = 600.0,
) -> None:
    """Ask a running `mmsr serve`; shows the reasoning, the searches and the answer as they happen.

    Without a question: an interactive session that keeps the conversation (`/image PATH` attaches
    a picture to the next question, `/clear` forgets the conversation, `/bye` or Ctrl-D ends it;
    Ctrl-C stops an answer)."""
    import openai

    client = openai.OpenAI(base_url=url, api_key=api_key, timeout=timeout, max_retries=1)
    try:
        model = model or client.models.list().data[0].id
        session = ChatSession(client, model, search_mode)
        if question is not None:
            session.ask(question, image)
        else:
            session.interact(url, image)
    except openai.APIConnectionError as exc:
        typer.secho(f"error: cannot reach {url} ({exc}); is `mmsr serve` running there?", fg="red", err=True)
        raise typer.Exit(1) from exc
    except openai.NotFoundError as exc:
        hint = (
            ""
            if url.rstrip("/").endswith("/v1")
            else f" (the base URL usually ends in /v1: {url.rstrip('/')}/v1)"
        )
        typer.secho(f"error: {url}: {exc.message}{hint}", fg="red", err=True)
        raise typer.Exit(1) from exc
    except openai.APIError as exc:
        typer.secho(f"error: {url}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc


class ChatSession:
    """One conversation with the server: each question is sent with the answers so far."""

    HELP = "/image PATH: attach a picture to the next question  /clear: new conversation  /bye: quit"

    def __init__(self, client: Any, model: str, search_mode: str) -> None:
        self.client, self.model, self.search_mode = client, model, search_mode
        self.history: list[dict[str, Any]] = []

    def ask(self, question: str, image: Path | None = None) -> str:
        """Stream the answer to ``question`` (with the conversation so far); returns the answer."""
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": image_data_url(image)}})
        messages = [*self.history, {"role": "user", "content": content}]
        stream = self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"search_mode": self.search_mode},
        )
        try:
            answer = ChatPrinter().print_stream(stream)
        finally:
            stream.close()  # also when interrupted: the server stops the run
        if answer:
            self.history = [*messages, {"role": "assistant", "content": answer}]
        return answer

    def interact(self, url: str, image: Path | None) -> None:
        import contextlib

        import openai

        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and recall for input(), where the platform has it)

        typer.secho(f"Chatting with {self.model} at {url}. {self.HELP}", dim=True)
        while True:
            try:
                line = input(">>> ").strip()
            except (EOFError, KeyboardInterrupt):
                typer.echo("")
                return
            if not line:
                continue
            if line in ("/bye", "/exit", "/quit"):
                return
            if line == "/clear":
                self.history, image = [], None
                typer.secho("(a new conversation)", dim=True)
                continue
            if line in ("/help", "/?"):
                typer.secho(self.HELP, dim=True)
                continue
            if line.startswith("/image"):
                path = Path(line.removeprefix("/image").strip()).expanduser()
                if not path.is_file():
                    typer.secho(f"no such file: {path}", fg="red", err=True)
                    continue
                image = path
                typer.secho(f"(the next question asks about {path})", dim=True)
                continue
            try:
                self.ask(line, image)
                image = None
            except KeyboardInterrupt:
                typer.secho("\n[stopped]", fg="yellow")
            except typer.BadParameter as exc:
                typer.secho(f"error: {exc}", fg="red", err=True)
                image = None
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                typer.secho(f"error: {getattr(exc, 'message', exc)}", fg="red", err=True)


def image_data_url(path: Path) -> str:
    from mmsr_serve.images import file_data_url

    try:
        return file_data_url(path)
    except MMSRError as exc:
        raise typer.BadParameter(str(exc)) from exc


class ChatPrinter:
    """Prints a chat completion stream for a person: reasoning dimmed, searches, then the answer."""

    def __init__(self) -> None:
        self._section: Literal["", "reasoning", "answer"] = ""

    def print_stream(self, stream: Any) -> str:
        """Print the stream as it comes; returns the answer."""
        answer: list[str] = []
        for chunk in stream:
            if not chunk.choices:
                if chunk.usage is not None:
                    self._end()
                    calls = (chunk.usage.model_extra or {}).get("search_calls", {})
                    typer.secho(f"[{chunk.usage.total_tokens} tokens, searches: {calls}]", dim=True)
                continue
            choice = chunk.choices[0]
            delta, extra = choice.delta, choice.delta.model_extra or {}
            if extra.get("reasoning_content"):
                self._start("reasoning", "reasoning: ")
                typer.secho(extra["reasoning_content"], dim=True, nl=False)
            for search in extra.get("search_events") or []:
                self._end()
                typer.secho(describe_search(search), fg="cyan")
            if delta.content:
                answer.append(delta.content)
                self._start("answer", "answer: ")
                typer.secho(delta.content, bold=True, nl=False)
            if choice.finish_reason is not None:
                self._end()
                if choice.finish_reason != "stop":
                    typer.secho(f"[finished without an answer: {choice.finish_reason}]", fg="yellow")
        self._end()
        return "".join(answer)

    def _start(self, section: Literal["reasoning", "answer"], label: str) -> None:
        if self._section != section:
            self._end()
            typer.secho(label, dim=section == "reasoning", nl=False)
            self._section = section

    def _end(self) -> None:
        if self._section:
            typer.echo("")
            self._section = ""


def describe_search(search: dict[str, Any]) -> str:
    what = "image search" if search.get("kind") == "image" else f"web search: {search.get('query')}"
    if search.get("status") == "started":
        return f"[{what} ...]"
    if search.get("error"):
        return f"[{what} failed: {search['error']}]"
    results = search.get("results") or []
    cached = ", cached" if search.get("cached") else ""
    lines = [
        f"[{what}: {len(results)} results ({search.get('provider')}, {search.get('latency_ms')} ms{cached})]"
    ]
    lines += [f"  - {r['title']} <{r['url']}>" for r in results]
    return "\n".join(lines)


def main() -> None:  # python -m mmsr_serve.api.cli serve|chat ...
    app = typer.Typer(no_args_is_help=True, add_completion=False)
    app.command("serve")(serve)
    app.command("chat")(chat)
    app(prog_name="mmsr")


if __name__ == "__main__":
    main()
