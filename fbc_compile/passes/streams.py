"""Which of a block's inputs each of its outputs continues: the streams a transformer block carries.

A DiT block reads some values that it replaces (the streams it carries: image tokens, text tokens, or one joint
stream) and some that every block reads (time embedding, rotary tables, masks), and returns one new value per
carried stream, of the same layout. First Block Cache needs that pairing twice: block 0's residual is its
hidden-states output minus the input it continues, and a skipped call replaces every later block by the
identity on its streams, which means handing each output's paired input on in its place.

The pairing is read off the graph, never off a table of model names, in two ways:

* **By role**, between two consecutive blocks of one class (the same ops in the same order, but for a few at
  either end): where block k+1 reads block k's output ``o``, block k read, at the same place, the input that
  ``o`` continues. Roles hold for every block of those ops, so they pair streams whatever their shapes: equal
  image and text token counts, or look-alike inputs, are no ambiguity.
* **By layout**, for an output no role explains (a list of one block): the one input of the output's shape and
  dtype that nothing reads after the block and no block before it read (a carried stream is replaced; shared
  inputs are read again); of several, the one fewest ops away from the output (the residual path), then, of
  earlier blocks' outputs, the one the previous block returned (a long skip connection brings an earlier
  block's output too).

Where neither gives exactly one input, the block carries no streams the cache can follow.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Iterator

import torch
import torch.fx as fx
from torch.fx.experimental.symbolic_shapes import statically_known_true

__all__ = ["Block", "mutates_in_place", "pair_streams", "same_layout", "sources", "value"]


@dataclasses.dataclass
class Block:
    """One call of one indexed child of a module list, and the streams it carries."""

    name: str  # "transformer_blocks.0"
    module_cls: type | None
    nodes: list[fx.Node]  # in graph order
    carries: dict[fx.Node, fx.Node] = dataclasses.field(default_factory=dict)  # output -> the input it continues

    def inputs(self) -> list[fx.Node]:
        members = set(self.nodes)
        return list(dict.fromkeys(arg for node in self.nodes for arg in node.all_input_nodes if arg not in members))

    def outputs(self) -> list[fx.Node]:
        """The tensors the block computes that something after it reads (sizes it reads off them are no stream)."""
        members = set(self.nodes)
        return [node for node in self.nodes if _is_tensor(node) and any(user not in members for user in node.users)]

    def structure(self) -> tuple:
        """The block's ops with their constant arguments (a slice's bounds tell the text half from the image's)."""
        return tuple((node.op, node.target, repr(fx.map_arg((node.args, node.kwargs), lambda _: None)))
                     for node in self.nodes)


def value(node: fx.Node):
    return node.meta.get("example_value", node.meta.get("val"))


def _is_tensor(node) -> bool:
    return isinstance(node, fx.Node) and isinstance(value(node), torch.Tensor)


def same_layout(a: fx.Node, b: fx.Node) -> bool:
    va, vb = value(a), value(b)
    if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
        return False
    return va.dtype == vb.dtype and va.dim() == vb.dim() and all(
        statically_known_true(x == y) for x, y in zip(va.shape, vb.shape))


def _places(container, target: fx.Node, path=()) -> Iterator[tuple]:
    """The paths at which ``target`` appears in a node's (nested) args and kwargs."""
    if container is target:
        yield path
    elif isinstance(container, (tuple, list)):
        for i, item in enumerate(container):
            yield from _places(item, target, (*path, i))
    elif isinstance(container, dict):
        for key, item in container.items():
            yield from _places(item, target, (*path, key))


def _at(node: fx.Node, path: tuple):
    item = (node.args, node.kwargs)
    for key in path:
        item = item[key]
    return item


def _align(a: tuple, b: tuple) -> dict[int, int]:
    """Positions of ``b``'s nodes -> positions of ``a``'s, over their common prefix and common suffix of ops. Two
    calls of one block class trace to the same ops but for a few, mostly at one end: the last block of a list
    does not compute an output nothing reads (Flux's last single-stream block drops the text slice)."""
    aligned, n = {}, 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        aligned[n] = n
        n += 1
    for k in range(1, min(len(a), len(b)) - n + 1):
        if a[-k] != b[-k]:
            break
        aligned[len(b) - k] = len(a) - k
    return aligned


def _roles(blocks: list[Block]) -> dict[tuple, dict[int, tuple]]:
    """structure -> {output position: (position of the reading node, path of the argument)}, from every pair of
    consecutive blocks of one class: where block k+1 reads block k's output, block k read, at the same place of
    the same ops, the input that output continues."""
    roles: dict[tuple, dict[int, tuple]] = {}
    for a, b in zip(blocks, blocks[1:]):
        if a.module_cls is not b.module_cls:
            continue
        structure = a.structure()
        aligned = _align(structure, b.structure())
        members = set(a.nodes)
        in_b = {node: j for j, node in enumerate(b.nodes)}
        for p, out in enumerate(a.nodes):
            sites = sorted((aligned[in_b[user]], path) for user in out.users if in_b.get(user) in aligned
                           for path in _places((user.args, user.kwargs), out))
            for j, path in sites:
                read = _at(a.nodes[j], path)
                if isinstance(read, fx.Node) and read not in members:
                    roles.setdefault(structure, {}).setdefault(p, (j, path))
                    break
    return roles


def _by_role(block: Block, out: fx.Node, roles: dict[tuple, dict[int, tuple]]):
    """The input of ``block`` that ``out`` continues by a role of a block of the same ops (aligned), if any."""
    structure, q = block.structure(), block.nodes.index(out)
    for exemplar, sites in roles.items():
        aligned = _align(exemplar, structure)
        site = sites.get(aligned.get(q))
        at = {a: b for b, a in aligned.items()}.get(site[0]) if site else None
        if at is not None:
            return _at(block.nodes[at], site[1])
    return None


def _nearest(out: fx.Node, candidates: list[fx.Node], members: set[fx.Node]) -> list[fx.Node]:
    """The candidates fewest ops away from ``out`` inside the block: a stream reaches its output through the
    block's residual additions, another input of its shape through attention or a projection first."""
    distance, frontier, seen = 0, [out], {out}
    while frontier:
        distance += 1
        reached = [arg for node in frontier for arg in node.all_input_nodes if arg in candidates]
        if reached:
            return list(dict.fromkeys(reached))
        frontier = [arg for node in frontier for arg in node.all_input_nodes if arg in members and arg not in seen]
        seen.update(frontier)
    return candidates


def _read_after(node: fx.Node, last: int, order: dict[fx.Node, int]) -> bool:
    return any(order[user] > last for user in node.users)


def pair_streams(blocks: list[Block], params: set[fx.Node], order: dict[fx.Node, int]) -> bool:
    """Fill in ``block.carries`` for each of ``blocks`` (one module list, in execution order). Returns whether
    every output of every block continues exactly one input, each input continued at most once."""
    roles = _roles(blocks)
    previous: set[fx.Node] = set()  # what the block before returned
    returned: set[fx.Node] = set()  # what the blocks before returned
    read_before: set[fx.Node] = set()  # what the blocks before read (shared inputs, skip connections)
    for block in blocks:
        inputs = [arg for arg in block.inputs() if _is_tensor(arg) and arg not in params]
        last = order[block.nodes[-1]]
        block.carries = {}
        for out in block.outputs():
            carried = _by_role(block, out, roles)
            if carried not in inputs or not same_layout(carried, out):
                replaced = [arg for arg in inputs if same_layout(arg, out) and not _read_after(arg, last, order)
                            and arg not in read_before and arg not in block.carries.values()]
                if len(replaced) > 1:
                    replaced = _nearest(out, replaced, set(block.nodes))
                if len(replaced) > 1 and all(arg in returned for arg in replaced):
                    # a skip connection from an earlier block (HunyuanDiT): the stream is the latest
                    replaced = [arg for arg in replaced if arg in previous]
                carried = replaced[0] if len(replaced) == 1 else None
            if carried is None or carried in block.carries.values() or not same_layout(carried, out):
                block.carries = {}
                return False
            block.carries[out] = carried
        previous = set(block.carries)
        returned |= previous
        read_before.update(inputs)
    return True


_IN_PLACE_OPERATORS = frozenset((operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
                                  operator.ifloordiv, operator.imod, operator.ipow, operator.imatmul, operator.iand,
                                  operator.ior, operator.ixor, operator.ilshift, operator.irshift))


def mutates_in_place(node: fx.Node) -> bool:
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


# Ops that read only the shape, dtype and device of their tensor arguments.
_VALUE_FREE = frozenset(("new_zeros", "new_empty", "new_ones", "new_full", "zeros_like", "empty_like", "ones_like",
                         "full_like", "sym_size", "size", "dim"))


def sources(node: fx.Node, stop: dict[fx.Node, Block], params: set[fx.Node]) -> set:
    """What ``node``'s tensor value is computed from, back to the nearest block outputs (the blocks in ``stop``)
    and data inputs (placeholders that are not parameters). Parameters, constants and sizes are not sources; what
    is written into a tensor in place is."""
    found, seen, todo = set(), set(), [node]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in stop:
            found.add(stop[current].name)
        elif current.op == "placeholder":
            if current not in params and _is_tensor(current):
                found.add(current)
        else:
            if getattr(current.target, "__name__", current.target) not in _VALUE_FREE:
                todo.extend(arg for arg in current.all_input_nodes if _is_tensor(arg))
            # A tensor is also computed from what is written into it (Lumina2 fills a zero tensor with its streams).
            todo.extend(arg for user in current.users if mutates_in_place(user) and user.args[0] is current
                        for arg in user.all_input_nodes if _is_tensor(arg))
    return found
