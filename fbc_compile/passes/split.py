"""Cut a dynamo graph into head (prologue + block 0), body (the other blocks) and tail (output layers).

The cut is where First Block Cache decides: after block 0 it knows the block-0 residual, and either runs the body
or replaces it. For that the split graph carries extra values, added here so that the compiled pieces produce
them with everything else, and the eager guard reads one number and does no arithmetic:

* the head takes the context's cached tensors as inputs: ``r_prev`` (block 0's residual at the last computed
  call) and one tail residual per value the body hands the tail;
* it returns ``r = hidden_states_out(block 0) - hidden_states_in(block 0)`` and the difference norm
  ``residual_diff(r, r_prev)``, traced into the head's compiled code (on CPU inductor fuses its arithmetic into
  the kernels that produce ``r``; on GPU the compiled code launches its Triton kernel directly);
* it also returns what a skipped call returns (``_speculate_skip``), so that a skipped call is the head's one
  compiled call; a computed call drops these values and runs body and tail. A graph traced with grad enabled
  never skips and leaves this out;
* the tail also returns the tail residuals of a computed call, which the guard stores.

**What a skipped call computes.** The body is blocks 1..N-1 and whatever glue runs between them: FLUX.2 and
AuraFlow concatenate the text and image streams between their two block lists, Wan VACE adds a control hint
after some blocks. A skip replaces the body by the body with every block replaced by the identity on the
streams it carries (``identity_body``: each block output becomes the block input it continues, the glue still
runs), plus what the real body added to that the last time it ran::

    skipped(h0) = identity_body(h0) + (body(h0_prev) - identity_body(h0_prev))

for each value the body hands the tail. Where there is no glue, ``identity_body(h0)`` is block 0's outputs and
this is diffusers' First Block Cache step for step; a VACE hint of this call is added once, not twice; joined
and sliced streams are continued as they are joined.

**Which stream is measured.** Block 0's carried outputs (``streams.pair_streams``) that the model's first output
depends on through ``identity_body``: image tokens, not text tokens, in every two-stream model. Where glue joins
the streams (FLUX.2), the one computed from the latents (the model's ``hidden_states``) is measured.

The body is cut once more, into one piece per block (``split_into_blocks``), for compile time: blocks of one
class trace to the same graph, which is compiled once and served from torch's caches for the other blocks.
"""

from __future__ import annotations

import dataclasses
import operator
import re

import torch
import torch.fx as fx
from torch._dynamo.backends.distributed import propagate_dynamo_source, propagate_metadata
from torch._dynamo.source import DictGetItemSource, GetItemSource, LocalSource
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
from torch.fx.passes.split_module import split_module

from .. import kernels  # noqa: F401  defines torch.ops.fbc_compile.residual_diff
from .locate import Block, NoBlockSequence
from .streams import mutates_in_place, value

__all__ = ["FirstBlockSplit", "Wiring", "reduction_groups", "split_at_first_block", "split_into_blocks", "wired_pieces"]

HEAD, BODY, TAIL = 0, 1, 2
BLOCK_INDEX = "fbc_block_index"  # node.meta key: which body block a node belongs to
# Ops that change autocast or grad mode for the nodes after them: a node must not be moved across one.
_GLOBAL_STATE = (torch.amp._enter_autocast, torch.amp._exit_autocast, torch._C._set_grad_enabled)


@dataclasses.dataclass(frozen=True)
class Wiring:
    """Where each piece finds its inputs and where a call's results are.

    Every position is an index into one tuple that grows during a call: the graph's inputs, then the cached
    tensors (``r_prev``, then the tail residuals), then the outputs of head, body and tail in turn. The compile
    step fills it with example values, ``CachedGraph`` with a call's values.
    """

    piece_args: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # head, body, tail
    piece_widths: tuple[int, int, int]  # how many values each returns
    outputs: tuple[int, ...]  # the graph's outputs, in a computed call
    skip_outputs: tuple[int, ...]  # the graph's outputs, in a skipped call (empty: never skips)
    residual: int  # block 0's residual
    diff: int  # its difference norm against r_prev
    tail_residuals: tuple[int, ...]


@dataclasses.dataclass
class FirstBlockSplit:
    """The three pieces, how they are wired, and what the runtime needs to know about the graph's inputs.

    ``cached`` are example values of the tensors the head takes after the graph's inputs; where the blocks
    communicate over ``groups`` (context parallelism), the last of them is this rank's vote to compute, which the
    head adds up over the ranks with the two sums of the difference norm (``_decide_across_ranks``).
    ``instance_input`` is the position of a parameter, whose identity tells model instances apart.
    """

    pieces: tuple[fx.GraphModule, fx.GraphModule, fx.GraphModule]
    wiring: Wiring
    cached: list[torch.Tensor]
    instance_input: int
    groups: tuple[str, ...] = ()

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sum(n.op not in ("placeholder", "output") for n in piece.graph.nodes) for piece in self.pieces)


def _call(graph: fx.Graph, target, *args) -> fx.Node:
    """A new ``target(*args)`` node carrying its example value, as dynamo's nodes do: AOTAutograd's cache refuses
    a piece in which an op is applied to a node without one (it cannot tell it is a tensor)."""
    node = graph.call_function(target, args)
    values = fx.map_arg(args, value)
    with next(value(arg) for arg in node.all_input_nodes).fake_mode:
        node.meta["example_value"] = target(*values)
    return node


# Ops whose result may share memory with their first input: a write into it may be a write into that input.
_VIEWS = frozenset(("view", "reshape", "permute", "transpose", "t", "narrow", "select", "unsqueeze", "squeeze",
                    "expand", "expand_as", "flatten", "unflatten", "split", "chunk", "unbind", "as_strided",
                    "view_as", "movedim", "swapaxes", "diagonal", "contiguous", "detach", "to", "type", "type_as",
                    "float", "half", "bfloat16", "getitem"))


def _writes_outside(node: fx.Node, copied: set[fx.Node]) -> bool:
    """Whether ``node`` (one of the nodes the head runs a copy of) writes into memory that its copy would share with
    the original graph: into a value from outside ``copied``, or a view of one. A write into a tensor the copied
    nodes allocated themselves (Cosmos3's output layers fill a new zero tensor) is harmless."""
    if not mutates_in_place(node) or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    target = node.args[0]
    while target in copied and getattr(target.target, "__name__", target.target) in _VIEWS:
        target = target.args[0] if target.args and isinstance(target.args[0], fx.Node) else None
    return target not in copied


def _copy(gm: fx.GraphModule, blocks: list[Block]) -> tuple[fx.GraphModule, list[Block]]:
    """A copy of ``gm`` to cut, with ``blocks`` in its nodes. The cut adds inputs, and dynamo reads the inputs of
    the graph it passed after the backend returns, so that graph is left as it was."""
    copies: dict[fx.Node, fx.Node] = {}
    graph = fx.Graph()
    graph.output(graph.graph_copy(gm.graph, copies))
    for node in gm.graph.find_nodes(op="placeholder"):
        copies[node]._dynamo_source = getattr(node, "_dynamo_source", None)
    return fx.GraphModule(gm, graph), [
        dataclasses.replace(block, nodes=[copies[n] for n in block.nodes],
                            carries={copies[o]: copies[i] for o, i in block.carries.items()})
        for block in blocks]


def _assign_partitions(gm: fx.GraphModule, blocks: list[Block]) -> dict[fx.Node, int]:
    """Head up to the end of block 0, body up to the end of the last block, tail after it.

    Nodes between blocks belong to the body, except those that do not depend on any block and are needed after
    the body (a skipped call still needs them): they move to the head, whose inputs they can only depend on.
    """
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    in_block = {node for block in blocks for node in block.nodes}
    end_of_head = order[blocks[0].nodes[-1]]
    end_of_body = order[blocks[-1].nodes[-1]]
    depends_on_blocks = set()
    for node in gm.graph.nodes:
        if node in in_block or any(arg in depends_on_blocks for arg in node.all_input_nodes):
            depends_on_blocks.add(node)

    partition: dict[fx.Node, int] = {}
    for node in reversed(list(gm.graph.nodes)):
        if node.op in ("placeholder", "output"):
            continue
        i = order[node]
        if i <= end_of_head:
            partition[node] = HEAD
        elif i > end_of_body:
            partition[node] = TAIL
        elif node in depends_on_blocks:
            partition[node] = BODY
        else:
            needed_later = any(user.op == "output" or partition.get(user, BODY) != BODY for user in node.users)
            partition[node] = HEAD if needed_later else BODY
    return partition


def _check_global_state(gm: fx.GraphModule, blocks: list[Block], partition: dict[fx.Node, int]) -> None:
    """The split runs some nodes at another place than dynamo traced them (nodes moved to the head, copies of the
    glue and the tail in the head), which is only right if autocast and grad mode are the same there. They are
    where every such change after block 0 is undone inside the block that makes it."""
    in_block = {node: block for block in blocks[1:] for node in block.nodes}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in _GLOBAL_STATE or partition.get(node) == HEAD:
            continue
        balanced = (node.target is torch.amp._enter_autocast and node in in_block
                    and all(in_block.get(user) is in_block[node] for user in node.users)) or (
                        node.target is torch.amp._exit_autocast and node.args[0] in in_block
                        and in_block.get(node) is in_block[node.args[0]])
        if not balanced:
            raise NoBlockSequence(f"autocast or grad mode changes between block 0 and the output layers "
                                  f"({node.name}), so the output layers cannot run ahead of the decision")


def _handed_on(gm: fx.GraphModule, partition: dict[fx.Node, int]) -> list[fx.Node]:
    """The values the body hands the tail (or returns)."""
    return [node for node in gm.graph.nodes if partition.get(node) == BODY
            and any(user.op == "output" or partition.get(user) == TAIL for user in node.users)]


def _identity_body(blocks: list[Block], partition: dict[fx.Node, int], targets: list[fx.Node]):
    """How to compute ``identity_body`` for each of ``targets`` (body values): the map from a body value to the
    value that stands for it when blocks 1..N-1 are the identity, and the glue nodes that must run for it, in
    graph order. A block output stands for the block input it continues; a glue node stands for a copy of itself
    on what stands for its inputs; anything the body did not compute stands for itself."""
    carried = {out: inp for block in blocks[1:] for out, inp in block.carries.items()}
    in_block = {node for block in blocks[1:] for node in block.nodes}
    glue, seen, todo = set(), set(), list(targets)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in carried:
            todo.append(carried[node])
        elif partition.get(node) == BODY:
            if node in in_block:
                raise NoBlockSequence(f"the output layers read {node.name}, a value inside a block that is not a "
                                      f"stream it carries")
            glue.add(node)
            todo.extend(node.all_input_nodes)
    return carried, glue


def _resolve(node: fx.Node, carried: dict[fx.Node, fx.Node], copies: dict[fx.Node, fx.Node]) -> fx.Node:
    while node in carried:
        node = carried[node]
    return copies.get(node, node)


def _latent_input(gm: fx.GraphModule, latent_name: str) -> fx.Node | None:
    """The graph input that carries the model's latents: the forward's first argument (``hidden_states`` in
    diffusers, ``x`` in a few), passed by keyword or by position."""
    for node in gm.graph.find_nodes(op="placeholder"):
        source = getattr(node, "_dynamo_source", None)
        base = getattr(source, "base", None)
        if isinstance(source, LocalSource) and source.local_name == latent_name:
            return node
        if isinstance(base, LocalSource) and (
                isinstance(source, DictGetItemSource) and base.local_name == "kwargs" and source.index == latent_name
                or isinstance(source, GetItemSource) and base.local_name == "args" and source.index == 0):
            return node
    return None


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(current.all_input_nodes)
    return seen


def _measured_stream(gm: fx.GraphModule, blocks: list[Block], partition: dict[fx.Node, int],
                     handed_on: list[fx.Node], latent: fx.Node | None) -> fx.Node:
    """Block 0's output whose residual the guard measures (see the module docstring)."""
    output = gm.graph.output_node().args[0]
    first = output[0] if isinstance(output, (tuple, list)) and output else output
    primary = [node for node in handed_on if node in _ancestors(first)] if isinstance(first, fx.Node) else []
    carried, glue = _identity_body(blocks, partition, primary or handed_on)
    # What identity_body reads from outside the body: its targets' and its glue's inputs, each resolved.
    reached = {_resolve(node, carried, {}) for node in primary or handed_on}
    reached |= {_resolve(arg, carried, {}) for node in glue for arg in node.all_input_nodes}
    candidates = [out for out in blocks[0].carries if out in reached]
    if len(candidates) > 1:
        from_latents = [out for out in candidates if latent in _ancestors(blocks[0].carries[out])]
        candidates = from_latents or candidates
    if len(candidates) > 1:
        largest = max(value(out).numel() for out in candidates)
        candidates = [out for out in candidates if value(out).numel() == largest]
    if len(candidates) != 1:
        names = ", ".join(out.name for out in candidates) or "none"
        raise NoBlockSequence(f"cannot tell which output of {blocks[0].name} is the hidden states: "
                              f"{len(candidates)} candidates ({names})")
    return candidates[0]


def _decide_across_ranks(graph: fx.Graph, residual: fx.Node, previous: fx.Node, vote: fx.Node,
                         groups: tuple[str, ...]) -> fx.Node:
    """The difference norm every rank reads the same: under context parallelism each rank holds a shard of the
    residual, and ranks that decided alone would disagree (one skipping the blocks while another waits in their
    collectives: a hang). So the head adds up, over the ranks, ``sum|r - r_prev|``, ``sum|r_prev|`` and this
    rank's vote to compute (a rank-local reason: nothing comparable stored, grad mode), in one all-reduce per
    group, and divides. A vote from any rank makes the norm infinite: every rank computes. A group over which
    the residual is replicated scales both sums alike, so the ratio stays right."""
    sums = _call(graph, torch.ops.fbc_compile.residual_sums.default, residual, previous)
    total = _call(graph, torch.ops.aten.cat.default, [sums, _call(graph, torch.ops.aten.view.default, vote, [1])])
    for group in groups:
        total = _call(graph, torch.ops._c10d_functional.all_reduce.default, total, "sum", group)
        total = _call(graph, torch.ops._c10d_functional.wait_tensor.default, total)
    at = [_call(graph, torch.ops.aten.select.int, total, 0, i) for i in range(3)]
    ratio = _call(graph, torch.ops.aten.div.Tensor, at[0], at[1])
    return _call(graph, torch.ops.aten.masked_fill.Scalar, ratio, _call(graph, torch.ops.aten.gt.Scalar, at[2], 0),
                 float("inf"))


def reduction_groups(blocks: list[Block]) -> tuple[str, ...]:
    """The process groups the blocks communicate over (their functional collectives' group names), reduced to
    the one whose ranks hold all others' where there is one (a 2-D mesh's flattened group), else all of them."""
    names = sorted({node.args[-1] for block in blocks for node in block.nodes
                    if isinstance(node.target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket))
                    and str(node.target).startswith("_c10d_functional.") and isinstance(node.args[-1], str)})
    if len(names) < 2:
        return tuple(names)
    from torch.distributed import distributed_c10d as c10d

    ranks = {name: set(c10d.get_process_group_ranks(c10d._resolve_process_group(name))) for name in names}
    widest = max(names, key=lambda name: len(ranks[name]))
    return (widest,) if all(ranks[name] <= ranks[widest] for name in names) else tuple(names)


def _cached_input(graph: fx.Graph, name: str, like: fx.Node, shape: tuple | None = None) -> fx.Node:
    """A new last graph input for a tensor the guard hands in from the cache, contiguous and shaped like ``like``
    (or a float32 of ``shape``).

    The guard must know its shape before the head runs, from the call's inputs: a size dynamo only learns from
    tensor data (an unbacked size, from ``.item()``) cannot be known then."""
    fake = value(like)
    if free_unbacked_symbols(fake):
        raise NoBlockSequence(f"the size of {like.name} {tuple(fake.shape)} depends on tensor data, so the cache "
                              f"cannot hand the head its residual before the head runs")
    with fake.fake_mode:
        example = torch.empty(fake.shape if shape is None else shape, device=fake.device,
                              dtype=fake.dtype if shape is None else torch.float32)
    with graph.inserting_after(list(graph.find_nodes(op="placeholder"))[-1]):
        node = graph.placeholder(name)
    node.meta["example_value"] = example
    node._dynamo_source = None
    return node


def _speculate_skip(gm: fx.GraphModule, blocks: list[Block], partition: dict[fx.Node, int],
                    handed_on: list[fx.Node], tail_residuals: list[fx.Node]) -> tuple[list[fx.Node], list[fx.Node]]:
    """Add to the head what a skipped call returns: ``identity_body`` of each value the body hands on (the glue
    run on block 0's outputs), plus its cached tail residual, and the tail run on those. Returns the nodes that
    stand for the graph's outputs in a skipped call, and for each handed-on value, its ``identity_body``.

    The head computes this on every call, before the guard has decided, so that a skipped call is one compiled
    call: the add fuses into the output layers' first kernel, and nothing is launched or allocated after the
    decision. A computed call drops it; the output layers (a norm and a projection) cost a fraction of a block.
    """
    graph = gm.graph
    carried, glue = _identity_body(blocks, partition, handed_on)
    copied = glue | {node for node, part in partition.items() if part == TAIL}
    mutating = [node.name for node in copied if _writes_outside(node, copied)]
    if mutating:
        raise NoBlockSequence(f"the output layers or the glue between blocks modify tensors in place "
                              f"({', '.join(mutating)}), so a skipped call's outputs cannot be computed ahead of "
                              f"the decision")
    copies: dict[fx.Node, fx.Node] = {}
    with graph.inserting_before(graph.output_node()):
        for node in [node for node in graph.nodes if node in glue]:
            copies[node] = graph.node_copy(node, lambda arg: _resolve(arg, carried, copies))
            partition[copies[node]] = HEAD
        identity = [_resolve(node, carried, copies) for node in handed_on]
        substitute: dict[fx.Node, fx.Node] = {}
        for out, same, residual in zip(handed_on, identity, tail_residuals):
            substitute[out] = _call(graph, operator.add, same, residual)
            partition[substitute[out]] = HEAD
        for node in [node for node in graph.nodes if partition.get(node) == TAIL]:
            substitute[node] = graph.node_copy(node, lambda arg: substitute.get(arg, arg))
            partition[substitute[node]] = HEAD
    return [substitute.get(node, node) for node in graph.output_node().args[0]], identity


def _order_by_partition(gm: fx.GraphModule, partition: dict[fx.Node, int]) -> None:
    """Put the head's nodes before the body's and the body's before the tail's, keeping each piece's order.

    ``split_module`` runs pieces in graph order and, for graphs with autocast or grad-mode changes, requires the
    partitions to be in order; nodes moved to the head and the skip's copies of the glue and the tail were
    added at other places."""
    nodes = [node for node in gm.graph.nodes if node in partition]
    ranked = sorted(nodes, key=lambda node: partition[node])  # stable: each piece keeps the graph's order
    anchor = gm.graph.find_nodes(op="placeholder")[-1]
    for node in ranked:
        anchor.append(node)
        anchor = node


def split_at_first_block(original: fx.GraphModule, example_inputs, blocks: list[Block], speculate: bool = True,
                         latent_name: str = "hidden_states", groups: tuple[str, ...] = ()) -> FirstBlockSplit:
    """Split a copy of ``original`` at the end of block 0 and at the end of the last block.

    ``latent_name`` is the model's argument that carries the latents; ``groups`` are the process groups over which
    ranks must agree on the decision (``reduction_groups``). ``speculate=False`` leaves out a skipped call's
    outputs, the tail residuals and the cached tensors they need, for a graph that never skips: one traced with
    grad enabled.
    """
    instance_input = next((i for i, example in enumerate(example_inputs) if isinstance(example, torch.nn.Parameter)),
                          None)
    if instance_input is None:
        raise NoBlockSequence("the graph takes no parameters, which tell model instances apart")
    gm, blocks = _copy(original, blocks)
    partition = _assign_partitions(gm, blocks)
    for index, block in enumerate(blocks[1:]):
        for node in block.nodes:
            node.meta[BLOCK_INDEX] = index  # split_module copies it into the body, for split_into_blocks
    handed_on = _handed_on(gm, partition)
    if not handed_on:
        raise NoBlockSequence("the blocks after block 0 produce nothing the output layers use")
    if not any(part == TAIL for part in partition.values()):
        raise NoBlockSequence("nothing runs after the last block")
    _check_global_state(gm, blocks, partition)
    latent = _latent_input(gm, latent_name)
    hidden_out = _measured_stream(gm, blocks, partition, handed_on, latent)
    hidden_in = blocks[0].carries[hidden_out]

    graph = gm.graph
    output = graph.output_node()
    original_outputs = tuple(output.args[0])
    with graph.inserting_after(hidden_out):
        residual = _call(graph, operator.sub, hidden_out, hidden_in)
    with graph.inserting_after(residual):
        detached = _call(graph, torch.ops.aten.detach.default, residual)  # the norm is for the guard, not autograd
    # The cached tensors the head takes: r_prev, one tail residual per value the body hands on, and under context
    # parallelism this rank's vote. Contiguous (the guard stores them so, or passes zeros), of the symbolic shapes
    # of the values they stand for.
    cached = [_cached_input(graph, "fbc_previous_residual", hidden_out)]
    if speculate:
        cached += [_cached_input(graph, f"fbc_tail_residual_{i}", out) for i, out in enumerate(handed_on)]
    if groups:
        cached.append(_cached_input(graph, "fbc_vote", hidden_out, shape=()))
    with graph.inserting_before(detached.next):  # (each new node after the last: in the order they are made)
        if groups:
            diff = _decide_across_ranks(graph, detached, cached[0], cached[-1], groups)
        else:
            diff = _call(graph, torch.ops.fbc_compile.residual_diff.default, detached, cached[0])
    partition.update({node: HEAD for node in graph.nodes if node.op not in ("placeholder", "output")
                      and node not in partition})  # the residual, its norm and what it takes
    skip_outputs, tail_residuals = [], []
    if speculate:
        skip_outputs, identity = _speculate_skip(gm, blocks, partition, handed_on, cached[1:1 + len(handed_on)])
        with graph.inserting_before(output):
            for out, same in zip(handed_on, identity):
                tail_residuals.append(_call(graph, operator.sub, out, same))
                partition[tail_residuals[-1]] = TAIL
    # The extra values ride out of their pieces as extra graph outputs, so split_module exports them. Their
    # positions are read off the split graph's output, then the graph's own outputs are put back.
    extras = (residual, diff, *tail_residuals, *skip_outputs)
    output.args = (original_outputs + extras,)
    _order_by_partition(gm, partition)
    gm.recompile()
    split = _split_module(gm, partition, metadata_from=original)
    split_output = split.graph.output_node()
    results = list(split_output.args[0])
    wiring = _wiring(split, results, len(original_outputs), len(tail_residuals), len(skip_outputs))
    split_output.args = (tuple(results[: len(original_outputs)]),)
    split.graph.eliminate_dead_code()
    split.recompile()
    pieces = tuple(getattr(split, call.target) for call in split.graph.find_nodes(op="call_module"))
    return FirstBlockSplit(pieces, wiring, [value(node) for node in cached], instance_input, groups)


def wired_pieces(split: fx.GraphModule) -> tuple[list[fx.GraphModule], list[tuple[int, ...]], dict[fx.Node, int]]:
    """The pieces a split graph calls, in order; for each, the positions of its inputs in the tuple of values a
    call builds up (the graph's inputs, then each piece's outputs in turn); and the position of every value."""
    position = {node: i for i, node in enumerate(split.graph.find_nodes(op="placeholder"))}
    offset = len(position)
    pieces, args = [], []
    for call in split.graph.find_nodes(op="call_module"):
        pieces.append(getattr(split, call.target))
        args.append(tuple(position[arg] for arg in call.args))
        for user in call.users:  # operator.getitem(call, k)
            position[user] = offset + user.args[1]
        offset += len(pieces[-1].graph.output_node().args[0])
    return pieces, args, position


def _wiring(split: fx.GraphModule, results: list, outputs: int, tail_residuals: int, skips: int) -> Wiring:
    """Read the positions of ``Wiring`` off the split graph, whose output lists the graph's outputs, then
    residual, diff, tail residuals and skip outputs (``results``)."""
    pieces, args, position = wired_pieces(split)
    at = tuple(position[node] for node in results)
    residual, diff = at[outputs:outputs + 2]
    widths = tuple(len(piece.graph.output_node().args[0]) for piece in pieces)
    return Wiring(tuple(args), widths, at[:outputs], at[outputs + 2 + tail_residuals:], residual, diff,
                  at[outputs + 2:outputs + 2 + tail_residuals])


def split_into_blocks(body: fx.GraphModule) -> fx.GraphModule:
    """Split the body piece into one piece per block, so that each can be compiled on its own.

    A node outside every block (glue between two blocks) goes with the block before it, or the first; so the
    pieces run in block order, as ``split_module`` requires where autocast regions are involved.
    """
    index: dict[fx.Node, int] = {}
    current = 0
    for node in body.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        current = node.meta.get(BLOCK_INDEX, current)
        index[node] = current
    blocks = _split_module(body, index, metadata_from=body)
    _outputs_in_graph_order(blocks)
    for call in blocks.graph.find_nodes(op="call_module"):
        _name_by_position(getattr(blocks, call.target))
    return blocks


def _split_module(gm: fx.GraphModule, partition: dict[fx.Node, int], metadata_from: fx.GraphModule) -> fx.GraphModule:
    """``split_module`` by ``partition``, in graph order, each piece returning a tuple, with what AOTAutograd reads
    off a dynamo graph (the inputs' dynamo sources, the graph's meta) carried into the pieces."""
    split = split_module(gm, None, partition.__getitem__, keep_original_order=True, tuple_return=True)
    propagate_dynamo_source(gm, split)
    propagate_metadata(metadata_from, split)
    return split


def _outputs_in_graph_order(split: fx.GraphModule) -> None:
    """Make each piece return its outputs in the order it computes them.

    ``split_module`` orders them by where later pieces first read them, so two alike blocks can return the same
    values in different orders and miss each other in the cache: Flux's last double-stream block hands the
    single-stream blocks (text, image) states, the others hand the next block (image, text).
    """
    for call in split.graph.find_nodes(op="call_module"):
        piece = getattr(split, call.target)
        output = piece.graph.output_node()
        values = list(output.args[0])
        order = {node: i for i, node in enumerate(piece.graph.nodes)}
        ranked = sorted(range(len(values)), key=lambda i: order[values[i]])
        output.args = (tuple(values[i] for i in ranked),)
        piece.recompile()
        moved = {old: new for new, old in enumerate(ranked)}
        for user in list(call.users):  # operator.getitem(call, k)
            user.args = (call, moved[user.args[1]])
    split.recompile()


_NUMBERED = re.compile(r"_\d+$")


def _name_by_position(piece: fx.GraphModule) -> None:
    """Name a block piece's values by their position in it, and give its inputs no dynamo source, so that alike
    blocks are the same graph to the byte.

    AOTAutograd's cache keys a graph by its code and by the sources of its inputs, and both name the block
    (``l_self_modules_blocks_modules_3_..._weight``, ``L['self'].blocks[3]...``). With positional names and no
    sources, the entry the first block of a kind writes serves the others in the same process, which then skip
    AOTAutograd's trace as well as inductor's lowering. The inputs a block receives from earlier pieces have no
    source anyway (as in DDPOptimizer's pieces); for its parameters AOTAutograd would use one only to guard that
    two inputs are one tensor, which cannot happen: dynamo passes each tensor once. Names keep their stem
    (``linear_17`` becomes ``linear_40``).
    """
    graph = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    for i, node in enumerate(piece.graph.nodes):
        name = f"input_{i}" if node.op == "placeholder" else f"{_NUMBERED.sub('', node.name)}_{i}"
        target = name if node.op == "placeholder" else node.target
        args, kwargs = fx.map_arg((node.args, node.kwargs), values.__getitem__)
        values[node] = graph.create_node(node.op, target, args, kwargs, name=None if node.op == "output" else name,
                                         type_expr=node.type)
        values[node].meta = dict(node.meta)
        if node.op == "placeholder":
            values[node]._dynamo_source = None
    piece.graph = graph
    piece.recompile()
