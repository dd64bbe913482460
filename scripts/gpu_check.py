"""GPU check of the training path: the tiny GRPO step on CUDA in bfloat16 (autocast over float32
master weights), with its figures.

    python scripts/gpu_check.py [OUT_DIR]

Builds the tiny random Qwen2.5-VL and the fixture corpus, then runs GRPO steps with multi-turn
search rollouts (rollout 0 of each group scripted: image search -> text search -> answer; the
others sampled on the GPU), and prints one JSON object: device, dtypes, step times, loss, gradient
norm, rewards, images seen by the training forward pass, peak GPU memory, and whether the saved
checkpoint reloads with its prompt pack. Exits non-zero if a check fails. Runs on CPU too
(``--device cpu``), which is how it is tested before a GPU is spent on it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main(out_dir: Path, device: str) -> dict[str, Any]:
    import torch
    from PIL import Image
    from transformers import TrainerCallback

    from mmsr_train.config import GRPORunConfig
    from mmsr_train.generators import TeacherGenerator
    from mmsr_train.grpo import build_trainer
    from mmsr_train.tiny_model import build_tiny_qwen2_5_vl
    from tests.corpus_fixture import make_corpus, read_docs, variant

    work = Path(tempfile.mkdtemp(prefix="mmsr-gpu-check-"))
    tiny = build_tiny_qwen2_5_vl(work / "tiny")
    corpus = make_corpus(work / "corpus")
    docs = [d for d in read_docs(corpus) if d.get("image")][:4]
    lines, turns = [], {}
    for i, doc in enumerate(docs):
        with Image.open(corpus / doc["image"]) as image:
            variant(image, seed=i).save(work / f"q{i}.jpg")
        designer = doc["text"].split("designed by ")[1].split(" and")[0]
        question = f"Who designed object {i}?"
        lines.append(json.dumps({"image": f"q{i}.jpg", "question": question, "answers": [designer]}))
        turns[question] = [
            "<reason>I do not know it.</reason><search><img></search>",
            f"<reason>It is {doc['title']}.</reason><text_search>{doc['title']} designer</text_search>",
            f"<reason>Found it.</reason><answer>{designer}</answer>",
        ]
    (work / "train.jsonl").write_text("\n".join(lines) + "\n")
    config = GRPORunConfig.load(
        model=str(tiny),
        train_data=str(work / "train.jsonl"),
        output_dir=str(out_dir / "run"),
        index=str(corpus),
        num_generations=4,
        prompts_per_device=2,
        max_steps=3,
        max_tokens=96,
        max_total_tokens=1500,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        device="cuda" if device == "cuda" else "cpu",
        save_steps=1000,
    )

    def script_group_leaders(i: int, task: Any, generator: Any) -> Any:
        if i % config.num_generations:
            return generator
        return TeacherGenerator(trainer.processing_class.tokenizer, turns[task.question], generator)

    step_times: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.start)

    trainer = build_trainer(config, wrap=script_group_leaders, callbacks=[Clock()])
    model = trainer.model
    forwards: list[dict[str, Any]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if torch.is_grad_enabled() and kwargs.get("pixel_values") is not None:
            grid = kwargs["image_grid_thw"]
            pads = int((kwargs["input_ids"] == model.config.image_token_id).sum())
            forwards.append(
                {"images": int(grid.shape[0]), "pads": pads, "features": int(grid.prod(-1).sum()) // 4}
            )

    model.register_forward_pre_hook(record, with_kwargs=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - started
    trainer.save_model(config.output_dir)
    rollouts = trainer.last_rollouts
    logs = [e for e in trainer.state.log_history if "loss" in e]
    reloaded = _reload(Path(config.output_dir), device)
    figures = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "model_dtype": str(next(model.parameters()).dtype),
        "bf16_autocast": bool(trainer.args.bf16),
        "steps": trainer.state.global_step,
        "rollouts_per_step": config.num_generations * config.prompts_per_device,
        "step_time_s": [round(t, 3) for t in step_times],
        "train_wall_s": round(total, 2),
        "loss": [e["loss"] for e in logs],
        "grad_norm": [e["grad_norm"] for e in logs],
        "reward_mean": [e.get("reward") for e in logs],
        "reward_accuracy": [e.get("reward/accuracy") for e in logs],
        "search_ratio": [e.get("search/ratio") for e in logs],
        "last_shapes": [[t.action for t in r.result.turns] for r in rollouts],
        "forward_images": forwards[:3],
        "peak_gpu_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
        "checkpoint_reloads_with_pack": reloaded,
    }
    checks = {
        "finite_loss": all(math.isfinite(x) for x in figures["loss"]),
        "nonzero_grad": any(g > 0 for g in figures["grad_norm"]),
        "images_match": bool(forwards) and all(f["pads"] == f["features"] for f in forwards),
        "scripted_shape": ["image_search", "text_search", "answer"] in figures["last_shapes"],
        "reloads": reloaded,
        # bf16 compute under autocast, float32 master weights (the optimiser's updates not rounded away)
        "fp32_master_weights": figures["model_dtype"] == "torch.float32"
        and figures["bf16_autocast"] == (device == "cuda"),
    }
    figures["checks"] = checks
    return figures


def _reload(folder: Path, device: str) -> bool:
    from transformers import AutoModelForImageTextToText

    from mmsr_serve.agent.prompts import load_pack
    from mmsr_serve.backends.hf_core import load_processor

    model = AutoModelForImageTextToText.from_pretrained(folder).to(device)
    load_processor(folder)
    return model is not None and load_pack(folder / "prompt_pack.json").name == "mmsr-default"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    dev = "cpu" if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1] == "cpu" else "cuda"
    if dev == "cpu" and args and args[0] == "cpu":
        args = args[1:]
    out = Path(args[0] if args else os.environ.get("OUT", "gpu-check-out"))
    out.mkdir(parents=True, exist_ok=True)
    result = main(out, dev)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    (out / "gpu_check.json").write_text(text + "\n")
    sys.exit(0 if all(result["checks"].values()) else 1)
