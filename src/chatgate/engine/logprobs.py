"""Log-probabilities in OpenAI's shape, from the model's raw distribution at a step."""

from __future__ import annotations

from typing import Any

from chatgate.engine.model import LoadedModel


def raw_logits(ctx: Any, index: int, n_vocab: int) -> Any:
    """A copy of the logits for batch position *index* (before any sampler touched them)."""
    import llama_cpp
    import numpy as np

    pointer = llama_cpp.llama_get_logits_ith(ctx.ctx, index)
    return np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float64)


def _info(model: LoadedModel, token: int, logprob: float) -> dict[str, Any]:
    raw = model.piece(token, special=True)
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}


def logprob_entry(model: LoadedModel, logits: Any, token: int, top: int) -> dict[str, Any]:
    """OpenAI's ``logprobs.content[i]`` for the token chosen at one step."""
    import numpy as np

    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak).sum()))
    entry = _info(model, token, float(logits[token]) - log_total)
    best: list[dict[str, Any]] = []
    if top:
        ids = np.argpartition(-logits, top)[:top]
        ids = ids[np.argsort(-logits[ids])]
        best = [_info(model, int(i), float(logits[i]) - log_total) for i in ids]
    entry["top_logprobs"] = best
    return entry
