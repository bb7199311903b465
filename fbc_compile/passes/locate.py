"""Find the transformer block sequence of a dynamo graph from its ``nn_module_stack`` metadata.

Dynamo records, on every node, the chain of modules whose ``forward`` was running when the node was traced. A
diffusion transformer's blocks are the indexed children of one or more module lists (``transformer_blocks.0``,
``single_transformer_blocks.3``, ``blocks.7``), so the blocks can be found without knowing the model: group the
nodes by the outermost indexed child on their module path. Several lists that are siblings of the largest one and
run one after the other form one sequence, in execution order (Flux: the double-stream ``transformer_blocks``, then
the ``single_transformer_blocks``). Lists nested inside something else (HunyuanVideo's text-refiner blocks inside
``context_embedder``) are not siblings of the main list and stay part of the prologue.
"""

from __future__ import annotations

import dataclasses
import re

import torch.fx as fx

__all__ = ["Block", "NoBlockSequence", "locate_blocks", "module_path"]


class NoBlockSequence(Exception):
    """The graph has no block sequence the cache can use; the message says why."""


@dataclasses.dataclass
class Block:
    name: str  # "transformer_blocks.0"
    module_cls: type | None
    nodes: list[fx.Node]


# One path component in any spelling torch has used: `.name`, `.0`, `['name']`, `["name"]`, `[0]`.
_COMPONENT = re.compile(r"""\.?([A-Za-z_]\w*|\d+)|\[\s*(?:'([^']*)'|"([^"]*)"|(\d+))\s*\]""")
# The frame-local root of a path: `L['self']`, `L["self"]`, or a bare name such as `self`.
_ROOT = re.compile(r"""^(?:L\[\s*['"][^'"]*['"]\s*\]|[A-Za-z_]\w*)""")
# Spellings of "the module's children dict" that carry no name of their own.
_CONTAINERS = {"__dict__", "_modules"}


def module_path(spelling: str) -> tuple[str, ...]:
    """Normalise a module path as torch spells it into its attribute names.

    All of these give ``("transformer_blocks", "0", "attn")``::

        L['self'].transformer_blocks.0.attn                     (torch 2.13)
        L['self'].__dict__['_modules']['transformer_blocks'].0.attn
        L['self'].transformer_blocks[0].attn
        L['self']._modules['transformer_blocks']._modules['0'].attn
    """
    rest = _ROOT.sub("", spelling.strip(), count=1)
    parts = []
    for match in _COMPONENT.finditer(rest):
        part = next(group for group in match.groups() if group is not None)
        if part not in _CONTAINERS:
            parts.append(part)
    return tuple(parts)


def _outermost_indexed_child(node: fx.Node) -> tuple[tuple[str, ...], int, type | None] | None:
    """(list path, index, child class) of the first indexed module on the node's module path, if any."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    for spelling, module_cls in stack.values():  # outermost first
        path = module_path(spelling)
        digits = [i for i, part in enumerate(path) if part.isdigit()]
        if digits:
            i = digits[0]
            # The entry is normally the indexed child itself; if only a descendant was recorded, its class is unknown.
            return path[:i], int(path[i]), module_cls if i == len(path) - 1 else None
    return None


def locate_blocks(gm: fx.GraphModule) -> list[Block]:
    """The blocks of the graph's main block sequence, in execution order.

    Raises ``NoBlockSequence`` when there is none, or when its blocks do not run one after the other (then the
    graph cannot be cut at block boundaries).
    """
    lists: dict[tuple[str, ...], dict[int, Block]] = {}
    for node in gm.graph.nodes:
        if node.op not in ("call_function", "call_method", "call_module"):
            continue  # parameters and attributes are hoisted to the top of the graph: their place says nothing
        found = _outermost_indexed_child(node)
        if found is None:
            continue
        path, index, module_cls = found
        blocks = lists.setdefault(path, {})
        block = blocks.setdefault(index, Block(".".join((*path, str(index))), module_cls, []))
        block.nodes.append(node)
    # A block sequence repeats one block class; a Sequential of assorted layers is not one.
    lists = {path: blocks for path, blocks in lists.items()
             if len({block.module_cls for block in blocks.values()}) == 1}
    if not lists:
        raise NoBlockSequence("no repeated, indexed child modules (no transformer blocks) in the graph")

    def size(path):
        return sum(len(block.nodes) for block in lists[path].values())

    main = max(lists, key=size)
    siblings = [path for path in lists if path[:-1] == main[:-1]]
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    blocks = [block for path in siblings for block in lists[path].values()]
    blocks.sort(key=lambda block: order[block.nodes[0]])
    for before, after in zip(blocks, blocks[1:]):
        if order[before.nodes[-1]] > order[after.nodes[0]]:
            raise NoBlockSequence(f"blocks {before.name} and {after.name} interleave in the graph")
    if len(blocks) < 2:
        raise NoBlockSequence(f"only {len(blocks)} block ({blocks[0].name}); First Block Cache needs at least 2")
    return blocks
