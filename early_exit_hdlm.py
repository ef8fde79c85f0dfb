"""Early exit: base forwards that run only a range of the decoder layers, on a view of the shared cache.

This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`: it imports only torch and
transformers.
"""

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from transformers.cache_utils import Cache


class _SkippedLayer(nn.Module):
    """Stands in for a decoder layer outside the range being run; returns `replacement` or its input."""

    def __init__(self, replacement: torch.Tensor | None = None):
        super().__init__()
        self.replacement = replacement

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states if self.replacement is None else self.replacement


@contextlib.contextmanager
def running_layers(
    layers: nn.ModuleList, start: int, stop: int, capture: Sequence[int], injected: torch.Tensor | None = None
) -> Iterator[dict[int, torch.Tensor]]:
    """
    Run only decoder layers `[start, stop)` (0-based) of `layers` in the base forwards made inside the block.

    The skipped layers before `start` hand over `injected` (the output of layer `start - 1`); those after `stop`
    pass their input through. Yields a dict filled with the outputs of the layers in `capture`.
    """
    originals = list(layers)
    captured: dict[int, torch.Tensor] = {}

    def keep(index: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            captured[index] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [layers[index].register_forward_hook(keep(index)) for index in capture]
    try:
        for index in range(len(layers)):
            if not start <= index < stop:
                layers[index] = _SkippedLayer(injected if index < start else None)
        yield captured
    finally:
        for handle in handles:
            handle.remove()
        for index, module in enumerate(originals):
            layers[index] = module


def cache_view(cache: Cache, run: range) -> Cache:
    """
    A view of `cache` in which each layer outside `run` is replaced by a run layer of the same type.

    Layers outside the run are skipped and lag behind (or run ahead of) the others; the base model derives
    mask sizes and positions from its first layer of each type, so those must answer for the layers that run.
    Updates go to the shared layer objects, hence to `cache` itself.
    """
    view = copy.copy(cache)
    view.layers = list(cache.layers)
    representative = {}
    for index in run:
        representative.setdefault(type(cache.layers[index]), cache.layers[index])
    for index, layer in enumerate(cache.layers):
        if index not in run and type(layer) in representative:
            view.layers[index] = representative[type(layer)]
    return view


__all__ = ["cache_view", "running_layers"]
