"""Cut a dynamo graph into head (prologue + block 0), body (the other blocks) and tail (output layers).

The cut is where First Block Cache decides: after block 0 it knows the block-0 residual, and either runs the body
or replaces it by "block-0 outputs + the residual the body added last time". For that the split graph carries
extra values, added here so that the compiled pieces produce them with everything else, and the eager guard
reads one number and does no arithmetic:

* the head takes the context's cached tensors as inputs: ``r_prev`` (block 0's residual at the last computed
  call) and the tail residuals;
* it returns ``r = hidden_states_out(block 0) - hidden_states_in(block 0)`` and the difference norm
  ``residual_diff(r, r_prev)``. The op is traced into the head's compiled code: on CPU inductor fuses its
  arithmetic into the kernels that produce ``r``, on GPU the compiled code launches its Triton kernel directly,
  with no Python dispatch in between;
* it also returns what a skipped call returns: the tail run on "block-0 output + cached tail residual" for each
  value the body would hand the tail (``_speculate_skip``). A skipped call is then the head's one compiled call;
  a computed call drops these values and runs body and tail. A graph traced with grad enabled never skips and
  leaves this out;
* the tail also returns, for each value the body hands it, ``value - matching block-0 output`` (the tail
  residual a skipped call adds back). The tail computes these rather than the last block, so that the last block
  is a block like the others.

The body is cut once more, into one piece per block (``split_into_blocks``), for compile time: blocks of one
class trace to the same graph, which is compiled once and served from torch's caches for the other blocks, the
way regional compilation compiles a repeated block once. As one graph, the body would be lowered and scheduled
whole, every block again.

Which block-0 output a body output continues (the *pairing*) is derived from the graph, not from a table of
model names. Every DiT block maps its carried streams to streams of the same shape and dtype (hidden states stay
``[batch, image tokens, dim]``, encoder hidden states ``[batch, text tokens, dim]``), and the streams a model
carries differ in token count. So each body output is paired with the one block-0 output of its shape and dtype
that the body consumes; the measured stream is the largest one the tail reads (image tokens: text tokens are
fewer in every model we support), and its block-0 input is the one block-0 input of that shape and dtype that
block 1 does not read as well (inputs every block reads, like rotary tables, are not the carried stream).
Where that is ambiguous (a model run with as many text as image tokens) the split refuses with a reason rather
than guess, and the backend falls back to a plain compile.
"""

from __future__ import annotations

import dataclasses
import operator
import re

import torch
import torch.fx as fx
from torch._dynamo.backends.distributed import propagate_dynamo_source, propagate_metadata
from torch.fx.experimental.symbolic_shapes import statically_known_true
from torch.fx.passes.split_module import split_module

from .. import kernels  # noqa: F401  defines torch.ops.fbc_compile.residual_diff
from .locate import Block, NoBlockSequence

__all__ = ["FirstBlockSplit", "split_at_first_block", "split_into_blocks", "HEAD", "BODY", "TAIL"]

HEAD, BODY, TAIL = 0, 1, 2
PIECE_NAMES = ("submod_0", "submod_1", "submod_2")
BLOCK_INDEX = "fbc_block_index"  # node.meta key: which body block a node belongs to


@dataclasses.dataclass
class FirstBlockSplit:
    """The split graph and the positions the guard needs in it.

    ``graph`` calls ``submod_0`` (head), ``submod_1`` (body), ``submod_2`` (tail) and returns the original
    outputs. It takes ``len(cached)`` inputs more than the dynamo graph, which the guard fills from the cache:
    ``r_prev``, then (where it speculates) one tail residual per value the body hands on; ``cached`` holds their
    example values.
    ``residual_output`` and ``diff_output`` are the indices of ``r`` and of its difference norm against ``r_prev``
    in the head's outputs; ``tail_residual_outputs`` those of the tail residuals in the tail's outputs.
    ``skip_outputs`` are a skipped call's outputs, as positions in (graph inputs, head outputs); empty where it
    does not speculate.
    ``latent_inputs`` are the graph-input positions that block 0's hidden states derive from (the latents);
    ``instance_input`` is the position of a parameter, whose identity tells model instances apart.
    """

    graph: fx.GraphModule
    cached: list[torch.Tensor]
    residual_output: int
    diff_output: int
    skip_outputs: tuple[int, ...]
    tail_residual_outputs: tuple[int, ...]
    latent_inputs: tuple[int, ...]
    instance_input: int | None
    piece_outputs: tuple[int, int, int]  # how many values head, body and tail return
    piece_sizes: tuple[int, int, int]


def _value(node: fx.Node):
    return node.meta.get("example_value", node.meta.get("val"))


def _call(graph: fx.Graph, target, *args: fx.Node) -> fx.Node:
    """A new ``target(*args)`` node carrying its example value, as dynamo's nodes do: AOTAutograd's cache refuses
    a piece in which an op is applied to a node without one (it cannot tell it is a tensor)."""
    node = graph.call_function(target, args)
    values = [_value(arg) for arg in args]
    with values[0].fake_mode:
        node.meta["example_value"] = target(*values)
    return node


def _same_layout(a: fx.Node, b: fx.Node) -> bool:
    va, vb = _value(a), _value(b)
    if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
        return False
    return va.dtype == vb.dtype and va.dim() == vb.dim() and all(
        statically_known_true(x == y) for x, y in zip(va.shape, vb.shape)
    )


def _numel(node: fx.Node):
    value = _value(node)
    return value.numel() if isinstance(value, torch.Tensor) else 0


def _only(candidates: list[fx.Node], what: str) -> fx.Node:
    if len(candidates) != 1:
        names = ", ".join(node.name for node in candidates) or "none"
        raise NoBlockSequence(f"cannot tell {what}: {len(candidates)} candidates of that shape and dtype ({names})")
    return candidates[0]


_IN_PLACE_OPERATORS = frozenset((operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
                                  operator.ifloordiv, operator.imod, operator.ipow, operator.imatmul, operator.iand,
                                  operator.ior, operator.ixor, operator.ilshift, operator.irshift))


def _mutates_in_place(node: fx.Node) -> bool:
    """Whether ``node`` may write into one of its inputs (``x.add_()``, ``x[i] = y``, ``F.relu(x, inplace=True)``)."""
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.op != "call_function":
        return False
    if node.target in _IN_PLACE_OPERATORS or node.kwargs.get("inplace"):
        return True
    if isinstance(node.target, torch._ops.OpOverload):
        return node.target._schema.is_mutable
    return getattr(node.target, "__name__", "").endswith("_")


def _assign_partitions(gm: fx.GraphModule, blocks: list[Block]) -> dict[fx.Node, int]:
    """Head up to the end of block 0, body up to the end of the last block, tail after it.

    Nodes between blocks belong to the body, except those that do not depend on any block and are needed after
    the body (a skipped call still needs them): they move to the head, whose inputs they can only depend on.
    """
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    in_block = {node: k for k, block in enumerate(blocks) for node in block.nodes}
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
        elif node in in_block or node in depends_on_blocks:
            partition[node] = BODY
        else:
            needed_later = any(user.op == "output" or partition.get(user, BODY) != BODY for user in node.users)
            partition[node] = HEAD if needed_later else BODY
    return partition


def _latent_inputs(gm: fx.GraphModule, example_inputs, hidden_in: fx.Node) -> tuple[int, ...]:
    """Positions of the non-parameter tensor inputs that block 0's hidden states are computed from."""
    ancestors, todo = set(), [hidden_in]
    while todo:
        node = todo.pop()
        if node not in ancestors:
            ancestors.add(node)
            todo.extend(node.all_input_nodes)
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    return tuple(
        i for i, (node, value) in enumerate(zip(placeholders, example_inputs))
        if node in ancestors and isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)
    )


def _cached_input(graph: fx.Graph, name: str, like: fx.Node) -> fx.Node:
    """A new last graph input for a tensor the guard hands in from the cache, contiguous and shaped like ``like``."""
    fake = _value(like)
    with fake.fake_mode:
        example = torch.empty(fake.shape, dtype=fake.dtype, device=fake.device)
    with graph.inserting_after(list(graph.find_nodes(op="placeholder"))[-1]):
        node = graph.placeholder(name)
    node.meta["example_value"] = example
    node._dynamo_source = None
    return node


def _speculate_skip(graph: fx.Graph, partition: dict[fx.Node, int], outputs: tuple, cached: dict[fx.Node, fx.Node],
                    pairs: dict[fx.Node, fx.Node]) -> list[fx.Node]:
    """Add to the head what a skipped call returns: the tail, run on ``block-0 output + cached tail residual`` in
    place of each value the body hands on. Returns the nodes that stand for ``outputs`` in a skipped call.

    The head computes this on every call, before the guard has decided, so that a skipped call is one compiled
    call: the add fuses into the output layers' first kernel, and nothing is launched or allocated after the
    decision. A computed call drops it; the output layers (a norm and a projection) cost a fraction of a block.
    """
    substitute: dict[fx.Node, fx.Node] = {}
    with graph.inserting_before(graph.output_node()):
        for out, residual in cached.items():
            substitute[out] = _call(graph, operator.add, pairs[out], residual)
            partition[substitute[out]] = HEAD
        for node in [node for node in graph.nodes if partition.get(node) == TAIL]:
            substitute[node] = graph.node_copy(node, lambda arg: substitute.get(arg, arg))
            partition[substitute[node]] = HEAD
    return [substitute.get(node, node) for node in outputs]


def _copy(gm: fx.GraphModule, blocks: list[Block]) -> tuple[fx.GraphModule, list[Block]]:
    """A copy of ``gm`` to cut, with ``blocks`` in its nodes. The cut adds inputs, and dynamo reads the inputs of
    the graph it passed after the backend returns, so that graph is left as it was."""
    copies: dict[fx.Node, fx.Node] = {}
    graph = fx.Graph()
    graph.output(graph.graph_copy(gm.graph, copies))
    for node in gm.graph.find_nodes(op="placeholder"):
        copies[node]._dynamo_source = getattr(node, "_dynamo_source", None)
    return fx.GraphModule(gm, graph), [dataclasses.replace(b, nodes=[copies[n] for n in b.nodes]) for b in blocks]


def split_at_first_block(original: fx.GraphModule, example_inputs, blocks: list[Block],
                         speculate: bool = True) -> FirstBlockSplit:
    """Split a copy of ``original`` at the end of block 0 and at the end of the last block.

    ``speculate=False`` leaves out a skipped call's outputs (and the tail residual inputs they need), for a graph
    that never skips: one traced with grad enabled.
    """
    gm, blocks = _copy(original, blocks)
    partition = _assign_partitions(gm, blocks)
    for index, block in enumerate(blocks[1:]):
        for node in block.nodes:
            node.meta[BLOCK_INDEX] = index  # split_module copies it into the body, for split_into_blocks
    block0 = set(blocks[0].nodes)
    params = {node for node, value in zip(gm.graph.find_nodes(op="placeholder"), example_inputs)
              if isinstance(value, torch.nn.Parameter)}

    carried = [node for node in blocks[0].nodes if any(partition.get(u) == BODY for u in node.users)]
    handed_on = [node for node in gm.graph.nodes
                 if partition.get(node) == BODY
                 and any(u.op == "output" or partition.get(u) == TAIL for u in node.users)]
    if not handed_on:
        raise NoBlockSequence("the blocks after block 0 produce nothing the output layers use")
    if not any(part == TAIL for part in partition.values()):
        raise NoBlockSequence("nothing runs after the last block")
    # The head runs a copy of the tail before the body (``_speculate_skip``): a tail that writes into a tensor
    # could change a value the body reads.
    mutating = [node.name for node, part in partition.items() if part == TAIL and _mutates_in_place(node)]
    if speculate and mutating:
        raise NoBlockSequence(f"the output layers modify tensors in place ({', '.join(mutating)}), so a skipped "
                              f"call's outputs cannot be computed ahead of the decision")
    pairs = {out: _only([c for c in carried if _same_layout(c, out)], f"which block-0 output {out.name} continues")
             for out in handed_on}

    largest = max(_numel(out) for out in handed_on)
    measured = _only([out for out in handed_on if _numel(out) == largest], "which stream is the hidden states")
    hidden_out = pairs[measured]
    # Inputs that block 1 reads too (rotary tables, time embedding, text states in Wan/LTX) are shared by every
    # block; the carried stream is the input block 1 no longer reads, since block 0's output replaced it.
    block1 = set(blocks[1].nodes)
    block0_inputs = {arg for node in block0 for arg in node.all_input_nodes
                     if arg not in block0 and arg not in params and not any(u in block1 for u in arg.users)}
    hidden_in = _only([node for node in gm.graph.nodes if node in block0_inputs and _same_layout(node, hidden_out)],
                      "which block-0 input is the hidden states")
    latent_inputs = _latent_inputs(gm, example_inputs, hidden_in)

    # The extra values ride out of their pieces as extra graph outputs, so split_module exports them; so do the
    # skipped call's outputs. Their positions in the pieces are read off the split graph's output, then the
    # graph's own outputs are put back.
    graph = gm.graph
    output = graph.output_node()
    original_outputs = tuple(output.args[0])
    with graph.inserting_after(hidden_out):
        residual = _call(graph, operator.sub, hidden_out, hidden_in)
    with graph.inserting_after(residual):
        detached = _call(graph, torch.ops.aten.detach.default, residual)  # the norm is for the guard, not autograd
    # The cached tensors the head takes: r_prev, and one tail residual per value the body hands on. Contiguous
    # (the guard stores them so, or passes zeros), of the symbolic shapes of the values they stand for.
    cached = [_cached_input(graph, "fbc_previous_residual", hidden_out)]
    if speculate:
        cached += [_cached_input(graph, f"fbc_tail_residual_{i}", out) for i, out in enumerate(handed_on)]
    with graph.inserting_after(detached):
        diff = _call(graph, torch.ops.fbc_compile.residual_diff.default, detached, cached[0])
    partition.update({residual: HEAD, detached: HEAD, diff: HEAD})
    skip_outputs = (_speculate_skip(graph, partition, original_outputs, dict(zip(handed_on, cached[1:])), pairs)
                    if speculate else [])
    # The tail residuals are computed by the tail, which reads the values the body hands on anyway, so that the
    # last block is the same graph as the blocks before it (``split_into_blocks``). Added after the speculated
    # tail, which has no use for them.
    tail_residuals = []
    with graph.inserting_before(output):
        for out in handed_on:
            tail_residuals.append(_call(graph, operator.sub, out, pairs[out]))
            partition[tail_residuals[-1]] = TAIL
    extras = (residual, diff, *skip_outputs, *tail_residuals)
    output.args = (original_outputs + extras,)
    gm.recompile()

    split_gm = _split_module(gm, partition, metadata_from=original)

    split_output = split_gm.graph.output_node()
    exported = list(split_output.args[0][len(original_outputs):])
    split_output.args = (tuple(split_output.args[0])[: len(original_outputs)],)
    residual_at, diff_at = exported[:2]
    skip_at, tail_residuals_at = exported[2:2 + len(skip_outputs)], exported[2 + len(skip_outputs):]
    inputs = {node: i for i, node in enumerate(split_gm.graph.find_nodes(op="placeholder"))}
    # A skipped call's outputs are head outputs, or graph inputs the model returns unchanged.
    skip_positions = tuple(inputs[node] if node in inputs else len(inputs) + node.args[1] for node in skip_at)
    split_gm.graph.eliminate_dead_code()
    split_gm.recompile()

    pieces = [getattr(split_gm, name) for name in PIECE_NAMES]
    sizes = tuple(sum(n.op not in ("placeholder", "output") for n in piece.graph.nodes) for piece in pieces)
    piece_outputs = tuple(len(piece.graph.output_node().args[0]) for piece in pieces)
    instance_input = next((i for i, node in enumerate(gm.graph.find_nodes(op="placeholder")) if node in params),
                          None)
    return FirstBlockSplit(split_gm, [_value(node) for node in cached], residual_at.args[1], diff_at.args[1],
                           skip_positions, tuple(node.args[1] for node in tail_residuals_at), latent_inputs,
                           instance_input, piece_outputs, sizes)


def split_into_blocks(body: fx.GraphModule) -> fx.GraphModule:
    """Split the body piece into one piece per block, so that each can be compiled on its own.

    A node outside every block (glue between two block lists) goes with the latest block it reads from, or the
    first. Blocks do not interleave (``locate_blocks`` checks), so the pieces run in block order.
    """
    index: dict[fx.Node, int] = {}
    for node in body.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if BLOCK_INDEX in node.meta:
            index[node] = node.meta[BLOCK_INDEX]
        else:
            index[node] = max((index[arg] for arg in node.all_input_nodes if arg in index), default=0)
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
