"""``mmsr train demo``: the embedded default model, from nothing, on 2 CPU cores in under an hour.

The recipe (choices from earlier measurements of tiny Qwen2.5-VL training on this machine class):

1. **World**: the miniature world (docs/world.md) of ``--seed``, with ``--stream`` never-repeating
   generated entities, so that copying a name into the query and a value out of the results is
   learned rather than memorised.
2. **Tiny model**: :func:`mmsr_train.tiny_model.build_tiny_qwen2_5_vl` (128 wide, 4 layers; vision
   64 wide, 2 layers), the syllable tokenizer, images at most 84x84 pixels (9 image tokens; search
   thumbnails too), and :data:`DEMO_PACK`, a prompt pack short enough for a model this small.
3. **SFT warm start** on protocol trajectories in the world: known entities answered directly,
   every other entity by image search, then a text search for ``<name> <field>``, then the value.
   The sequences are built by replaying each trajectory through the serving loop
   (:func:`mmsr_train.sft.build_example`: :class:`~mmsr_train.generators.TeacherGenerator` behind a
   :class:`~mmsr_train.policy.PolicyBackend`), so prompts, search results and loss masks are
   exactly GRPO's and serving's. The optimisation is a plain PyTorch teacher-forced loop rather
   than TRL's ``SFTTrainer``: with ~200-token sequences the trainer's per-step overhead (dataset
   decoding, image preprocessing per batch) costs more than the tiny model's forward pass, and the
   loop pre-computes pixel values once and batches sequences of one kind together.
   The tokens of the text-search query and of the answer weigh ``value_weight`` (8) in the loss:
   copying a value out of the results is the slowest skill and is learned only when those tokens
   dominate; 15% of batches are RAG-workflow (``always`` mode) trajectories.
3b. **Decision stage**: ``decision_minutes`` more SFT from that checkpoint with the reasoning (the
   search decision) weighted like the values, at a constant learning rate: the values-first
   stage lets the decision drift, and weighting the reasoning from the start taught no copying.
4. **GRPO** with the paper's reward and search penalty (:func:`mmsr_train.grpo.train_grpo`, TRL's
   GRPO through the serving loop) from the SFT checkpoint, for the rest of the time budget.
5. **End of turn**: 80 more SFT steps on each checkpoint with the ``<|im_end|>`` after every
   model turn as a target too (:func:`teach_end_of_turn`): protocol turns stop on their closing
   tags, but a plain turn (search mode ``off``) must end on the model's own end-of-turn token.

6. **Continuing a checkpoint** (``init``, the default model's second phase): the same stages from
   an earlier demo checkpoint, with ``first_turns`` of the SFT batches cut after the first turn
   (:func:`first_turn`: the search decision, or a known entity's answer, at a fifth of a search
   trajectory's length) and ``grpo_known_share`` of the GRPO questions on known entities. From
   scratch such cuts taught the decision but starved the reading; on a checkpoint that already
   reads they add the decision and keep the reading (docs/demo.md has the figures).

The SFT checkpoint is written to ``OUT/sft`` and the final one to ``OUT/grpo``; each is servable
(``mmsr serve --backend hf --model OUT/grpo``) and carries the pack.

Modules: :mod:`.config` (:class:`DemoConfig`, light to import), :mod:`.examples` (the pack, the
gold trajectories, their encoding, weights and batches), :mod:`.recipe` (the stages and
:func:`run_demo`).
"""

from mmsr_train.demo.config import DemoConfig
from mmsr_train.demo.examples import (
    DEMO_PACK,
    IMAGE_PIXELS,
    Example,
    LazyPool,
    collate,
    encode_example,
    end_of_turn_labels,
    first_turn,
    gold_turns,
    value_weights,
    weighted_loss,
)
from mmsr_train.demo.recipe import grpo_data, run_demo, teach_end_of_turn, train_sft_demo

__all__ = [
    "DEMO_PACK",
    "IMAGE_PIXELS",
    "DemoConfig",
    "Example",
    "LazyPool",
    "collate",
    "encode_example",
    "end_of_turn_labels",
    "first_turn",
    "gold_turns",
    "grpo_data",
    "run_demo",
    "teach_end_of_turn",
    "train_sft_demo",
    "value_weights",
    "weighted_loss",
]
