"""Find the main block sequence of a dynamo graph from its ``nn_module_stack`` metadata.

Dynamo records, on every node, the chain of modules whose ``forward`` was running when the node was traced. A
diffusion transformer's blocks are the indexed children of module lists (``transformer_blocks.0``,
``single_transformer_blocks.3``, ``layers.7``), so the blocks can be found without knowing the model: group the
nodes by the outermost indexed child on their module path, one contiguous run of nodes per block call.

Most DiTs have more lists than their main sequence: text-refiner or noise-refiner lists (HunyuanVideo, Lumina2,
Z-Image), text blocks (Kandinsky 5), VACE blocks computing control hints (Wan VACE), per-block caption
projections (Bria Fibo), perceiver cross-attentions run every few blocks (ConsisID). The main sequence is the one
that carries the hidden states from the prologue to the output layers:

1. A list is a block sequence only if its blocks carry streams (``streams.pair_streams``: each output continues
   an input of the same layout) and hand them from one block to the next. A list of projections that each read
   the same text embedding, or of cross-attentions whose output is added to a stream they do not replace, is not.
2. The main list is the largest such list among the outermost ones (nested lists, like HunyuanVideo's refiner
   inside ``context_embedder``, belong to some embedder).
3. The list that runs just before (after) it joins the sequence when the main list's first block carries on
   the streams of that list's last block (the next list's first block those of the main list's last block),
   through whatever glue runs between them: Flux's double-stream blocks then its single-stream ones, FLUX.2's
   and AuraFlow's with the text and image streams concatenated between the two, Flux3's image blocks before its
   single-stream ones. Refiners whose outputs are joined with other data into one stream (Z-Image's image and
   caption refiners, concatenated) stay in the prologue.
4. Sibling lists whose blocks alternate (Latte's spatial and temporal blocks) are one list, in execution order,
   where together they carry streams.
"""

from __future__ import annotations

import itertools
import re

import torch
import torch.fx as fx

from .streams import Block, pair_streams, sources

__all__ = ["Block", "NoBlockSequence", "locate_blocks", "module_path"]


class NoBlockSequence(Exception):
    """The graph has no block sequence the cache can use; the message says why."""


# One path component in any spelling torch has used: `.name`, `.0`, `.2-1`, `['name']`, `["name"]`, `[0]`.
_COMPONENT = re.compile(r"""\[\s*(?:'([^']*)'|"([^"]*)"|(\d+))\s*\]|\.?([^.\[\]]+)""")
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
        L['function_reference'].forward.__self__.__dict__['_modules']['transformer_blocks'].0.attn   (under a hook)
    """
    rest = _ROOT.sub("", spelling.strip(), count=1)
    parts = []
    for match in _COMPONENT.finditer(rest):
        part = next(group for group in match.groups() if group is not None)
        if part == "__self__":  # the module a bound method belongs to (diffusers' hooks call forward.__self__)
            parts.clear()
        elif part not in _CONTAINERS:
            parts.append(part)
    return tuple(parts)


def _owner(node: fx.Node) -> tuple[tuple[str, ...], int, type | None] | None:
    """(list path, index, child class) of the outermost indexed module on the node's module path, if any."""
    for spelling, module_cls in (node.meta.get("nn_module_stack") or {}).values():  # outermost first
        path = module_path(spelling)
        for i, part in enumerate(path):
            if part.isdigit():
                # The entry is normally the indexed child itself; if only a descendant was recorded, its class is unknown.
                return path[:i], int(part), module_cls if i == len(path) - 1 else None
    return None


def _is_module_list(root: torch.nn.Module | None, path: tuple[str, ...]) -> bool:
    """Whether ``path`` names a ``ModuleList`` (a ``ModuleDict`` with digit keys is not a sequence of blocks).
    Without the model, a digit component is taken for an index."""
    if root is None:
        return True
    try:
        return isinstance(root.get_submodule(".".join(path)), (torch.nn.ModuleList, torch.nn.Sequential))
    except AttributeError:
        return False


def _block_calls(gm: fx.GraphModule, root: torch.nn.Module | None) -> dict[tuple[str, ...], list[Block]]:
    """The blocks of every module list, each as its longest contiguous run of nodes, in execution order.

    A block's submodule used again elsewhere (DiT's output layers call ``transformer_blocks[0].norm1.emb``) is
    another run, which stays outside the block. Nodes dynamo traced with no module path between two nodes of one
    run belong to that run."""
    runs: list[tuple[tuple, list[fx.Node], type | None]] = []
    pending: list[fx.Node] = []
    for node in gm.graph.nodes:
        if node.op not in ("call_function", "call_method", "call_module"):
            continue  # parameters and attributes are hoisted to the top of the graph: their place says nothing
        owner = _owner(node)
        if owner is None:
            pending.append(node)
            continue
        key = owner[:2]
        if runs and runs[-1][0] == key:
            runs[-1][1].extend(pending)
            runs[-1][1].append(node)
        else:
            runs.append((key, [node], owner[2]))
        pending = []
    longest: dict[tuple, tuple[list[fx.Node], type | None]] = {}
    for key, nodes, module_cls in runs:
        if key not in longest or len(nodes) > len(longest[key][0]):
            longest[key] = (nodes, module_cls or longest.get(key, (None, None))[1])
    lists: dict[tuple[str, ...], list[Block]] = {}
    for (path, index), (nodes, module_cls) in longest.items():
        if _is_module_list(root, path):
            lists.setdefault(path, []).append(Block(".".join((*path, str(index))), module_cls, _unsplit(nodes)))
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for blocks in lists.values():
        blocks.sort(key=lambda block: order[block.nodes[0]])
    # A block sequence repeats one block class; a Sequential of assorted layers is not one.
    return {path: blocks for path, blocks in lists.items() if len({block.module_cls for block in blocks}) == 1}


# Ops that take a rank's shard of a tensor: chunk(world)[rank], as diffusers' context parallelism does.
_SHARDING = frozenset(("chunk", "split", "tensor_split", "narrow", "getitem", "contiguous"))


def _unsplit(nodes: list[fx.Node]) -> list[fx.Node]:
    """A block call without the ops it begins with that only take a shard of its inputs: context parallelism
    shards the hidden states in a hook on block 0 (Wan, QwenImage), which dynamo records inside the block. The
    shard is the stream block 0 carries, and what block 1 receives."""
    members, start = set(nodes), 0
    while start < len(nodes) and getattr(nodes[start].target, "__name__", nodes[start].target) in _SHARDING and all(
            arg not in members or nodes.index(arg) < start for arg in nodes[start].all_input_nodes):
        start += 1
    return nodes[start:]


def locate_blocks(gm: fx.GraphModule, params: set[fx.Node] = frozenset(),
                  root: torch.nn.Module | None = None) -> list[Block]:
    """The blocks of the graph's main block sequence, in execution order, each with the streams it carries.

    ``params`` are the graph inputs that are parameters (never streams); ``root`` is the compiled module, if known
    (to tell module lists from module dicts). Raises ``NoBlockSequence`` when there is none.
    """
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    lists = {(path,): blocks for path, blocks in _block_calls(gm, root).items()}
    if not lists:
        raise NoBlockSequence("no repeated, indexed child modules (no transformer blocks) in the graph")
    member = {node: block for blocks in lists.values() for block in blocks for node in block.nodes}

    def fed_by(block: Block) -> set:
        return set().union(*(sources(carried, member, params) for carried in block.carries.values()))

    def carries_streams(blocks: list[Block]) -> bool:
        return pair_streams(blocks, params, order) and all(
            before.name in fed_by(after) for before, after in zip(blocks, blocks[1:]))

    def span(blocks: list[Block]) -> tuple[int, int]:
        return order[blocks[0].nodes[0]], order[blocks[-1].nodes[-1]]

    # Sibling lists whose blocks alternate (Latte) are one sequence if, merged, they carry streams (a side list
    # interleaved with the main one, like ConsisID's perceiver cross-attentions, does not).
    merged = True
    while merged:
        merged = False
        for a, b in itertools.combinations(sorted(lists, key=lambda key: span(lists[key])), 2):
            if a[0][:-1] == b[0][:-1] and span(lists[b])[0] < span(lists[a])[1]:
                blocks = sorted(lists[a] + lists[b], key=lambda block: order[block.nodes[0]])
                if carries_streams(blocks):
                    del lists[a], lists[b]
                    lists[a + b] = blocks
                    merged = True
                    break

    carrying = {key: blocks for key, blocks in lists.items() if carries_streams(blocks)}
    if not carrying:
        names = ", ".join(".".join(key[0]) for key in lists)
        raise NoBlockSequence(f"no module list whose blocks carry streams from one block to the next ({names})")

    def continues(earlier: list[Block], later: Block) -> bool:
        """Whether ``later`` (a list's first block) carries on the streams of ``earlier``'s last block: at least
        one of its carried inputs comes from that block alone, and the others not from it at all but from blocks
        that ran before ``earlier`` began (Flux3's text blocks), not from the model's inputs (then ``earlier`` is
        a refiner of the text, as HunyuanVideo's, and the hidden states enter at ``later``). Blocks of lists that carry no streams (Bria Fibo's
        caption projections, whose output is joined to the text) are side inputs here, as parameters are."""
        last, start = earlier[-1], order[earlier[0].nodes[0]]
        fed = [sources(carried, member, params) - side for carried in later.carries.values()]
        return any(f == {last.name} for f in fed) and all(
            f == {last.name} or (last.name not in f and all(started.get(s, start) < start for s in f)) for f in fed)

    side = {block.name for key, blocks in lists.items() if key not in carrying for block in blocks}
    started = {block.name: order[block.nodes[0]] for blocks in lists.values() for block in blocks}
    depth = min(len(key[0]) for key in carrying)
    main = max((key for key in carrying if len(key[0]) == depth),
               key=lambda key: sum(len(block.nodes) for block in carrying[key]))
    sequence = list(carrying.pop(main))
    while True:
        before = [blocks for blocks in carrying.values() if order[blocks[-1].nodes[-1]] < order[sequence[0].nodes[0]]]
        after = [blocks for blocks in carrying.values() if order[blocks[0].nodes[0]] > order[sequence[-1].nodes[-1]]]
        previous = max(before, key=lambda blocks: order[blocks[-1].nodes[-1]], default=None)
        following = min(after, key=lambda blocks: order[blocks[0].nodes[0]], default=None)
        if previous is not None and continues(previous, sequence[0]):
            sequence[:0] = previous
        elif following is not None and continues(sequence, following[0]):
            sequence += following
        else:
            break
        carrying = {key: blocks for key, blocks in carrying.items() if blocks[0] not in sequence}
    if len(sequence) < 2:
        raise NoBlockSequence(f"only 1 block ({sequence[0].name}); First Block Cache needs at least 2")
    return sequence
