"""Measuring searching models: the miniature world, evaluation, answer matching.

    world/     a generated, invented world: corpus + question splits (``mmsr world``, docs/world.md)
    eval/      the paper's table in miniature: accuracy and search ratio per mode (``mmsr eval``)
    answers    EM / SubEM answer matching, shared with the training reward
    judge      LLMJudge: LLM-as-judge accuracy with any OpenAI-compatible model (``mmsr eval --judge-model``)

This package sits between serving and training: it may import :mod:`mmsr_serve`, and
:mod:`mmsr_train` may import it; serving imports neither (docs/architecture.md).
"""
