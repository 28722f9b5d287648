"""Rewrites DeepFilterNet3's ONNX sequence graphs into one-frame streaming graphs.

usage: python prepare_dfn3.py TARBALL OUT_DIR

TARBALL is DeepFilterNet3_onnx.tar.gz (members */enc.onnx, */erb_dec.onnx,
*/df_dec.onnx, */config.ini). OUT_DIR receives

    enc_stream.onnx  erb_dec_stream.onnx  df_dec_stream.onnx
    dfn3_stream.json  config.ini (copied unchanged)

Depends only on `onnx` and `numpy`. The output is deterministic: running the
script twice gives byte-identical files, and files are replaced atomically.

What the shipped graphs contain
-------------------------------
Each shipped graph runs over a time axis S (shape [1, C, S, F] or [1, S, D]).
Exactly two kinds of node carry information from one frame to the next:

* GRU nodes (enc: /emb_gru/GRU; erb_dec: /emb_gru/GRU, /emb_gru/GRU_1;
  df_dec: /df_gru/gru/GRU, /df_gru/gru/GRU_1; hidden size 256, forward,
  linear_before_reset=1). Their initial_h is ConstantOfShape(0.0) of a shape
  built from Shape(...) of the batch size, i.e. zeros.
* Convolutions with a time kernel > 1, each fed by an explicit Pad node whose
  pads vector is computed by a small constant subgraph:
      enc     /erb_conv0/0/Pad      on feat_erb  time pads (begin 2, end 0) -> Conv 3x3
      enc     /df_conv0/0/Pad       on feat_spec time pads (begin 2, end 0) -> Conv 3x3
      df_dec  /df_convp/df_convp.0/Pad on c0     time pads (begin 4, end 0) -> Conv 5x1
  All padding is at the *beginning* of the time axis (causal); no Pad and no
  Conv pads anything at the end of the time axis. Every other Conv /
  ConvTranspose has time kernel 1 and pads only the frequency axis.

The rewrite (graph surgery, independent of the sequence length)
---------------------------------------------------------------
* GRU: initial_h becomes a graph input `h_in_<node>` [num_directions, 1, hidden];
  the GRU's Y_h output is exposed as `h_out_<node>`. If the original initial
  state were not all zeros, its value would be stored as an initializer with
  the input's name (the input's default) and the JSON would say so.
* Pad + Conv over time with pads (begin P, end 0): the Pad is replaced by
  Concat(buf_in, x) along time, where `buf_in_<pad node>` holds the previous P
  frames of x (oldest first), and `buf_out_<pad node>` = the last P frames of
  that concatenation. The initial buffer is the Pad's constant value (0.0), so
  a zero buffer reproduces the sequence graph's leading zero padding exactly.
  (A Pad with nonzero padding on other axes would keep a Pad for those axes.)
* Inputs are fixed to one frame (S = 1, batch 1); dead nodes and unused
  initializers are removed; output shapes are measured with onnx's reference
  evaluator and the model is checked with onnx.checker (full_check).

Frame alignment (also written to dfn3_stream.json)
--------------------------------------------------
Graph level: the streaming graphs have NO delay. With all states at their
initial values and the same input frames fed in order, streaming output at
step t equals the sequence graph's output at frame t (k = 0) for every output
of enc, erb_dec and df_dec. erb_dec/df_dec at step t consume the enc outputs of
the same step t; there is no frame offset between the three graphs.

Model level: the conv_lookahead (2) is NOT inside the graphs. DeepFilterNet's
DfNet.forward shifts the features before the encoder with
ConstantPad2d((0, 0, -conv_lookahead, conv_lookahead)): model frame tau sees
feature frame tau + 2, the first 2 feature frames are dropped and 2 zero frames
are appended at the end. In streaming this necessarily becomes a delay of
conv_lookahead = 2 frames:
  * do not feed feature frames 0 and 1 to enc (they are dropped offline);
  * feeding feature frame n (computed from STFT frame n) at streaming step
    s = n - 2 yields the model outputs for STFT frame n - 2
    (m, lsnr, coefs, alpha all belong to spectrum frame n - 2);
  * to finish a stream, feed 2 frames of zero features.
The deep filter for spectrum frame tau uses spectrum frames tau-2 .. tau+2
(df_order 5, df_lookahead 2); tau + 2 = n is exactly the newest STFT frame,
so the whole pipeline has 2 frames (960 samples) of algorithmic lookahead on
top of the STFT's n_fft - hop = 480 samples (1440 samples in total).
"""
import argparse
import configparser
import hashlib
import json
import os
import re
import tarfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

GRAPHS = ("enc", "erb_dec", "df_dec")
TIME_DIM = "S"  # name of the symbolic time dimension in the shipped graphs
INT64_MAX = np.iinfo(np.int64).max
SHAPE_ONLY_OPS = ("Shape", "Size")  # ops whose output depends on shapes, not values


# --------------------------------------------------------------------------
# Small graph helpers
# --------------------------------------------------------------------------

def sanitize(name):
    """'/emb_gru/GRU_1' -> 'emb_gru_GRU_1' (stable, ASCII identifier)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def producers(graph):
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph, tensor):
    return [node for node in graph.node if tensor in node.input]


def dtype_name(elem_type):
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def static_shape(value_info):
    """Declared dims of a ValueInfo; symbolic dims are returned as strings."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in value_info.type.tensor_type.shape.dim]


def rename_tensor(graph, old, new):
    """Renames a tensor everywhere it is produced or consumed."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for out in graph.output:
        if out.name == old:
            out.name = new


def replace_nodes(graph, nodes):
    """Sets the graph's node list (copies, since protobuf lists own their items)."""
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in nodes]
    del graph.node[:]
    graph.node.extend(nodes)


def cone(graph, targets):
    """Nodes (in graph order) and tensor names needed to compute `targets`."""
    prod = producers(graph)
    tensors, node_ids, stack = set(), set(), list(targets)
    while stack:
        t = stack.pop()
        if t in tensors:
            continue
        tensors.add(t)
        node = prod.get(t)
        if node is not None and id(node) not in node_ids:
            node_ids.add(id(node))
            stack.extend(i for i in node.input if i)
    return [n for n in graph.node if id(n) in node_ids], tensors


def depends_on_input_values(graph, tensor):
    """True if `tensor` depends on the values (not only the shapes) of a graph input."""
    prod = producers(graph)
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    seen, stack = set(), [tensor]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in inputs:
            return True
        node = prod.get(t)
        if node is not None and node.op_type not in SHAPE_ONLY_OPS:
            stack.extend(i for i in node.input if i)
    return False


def evaluate(model, tensor, feeds):
    """Computes one tensor of `model` with onnx's reference evaluator, running
    only the nodes it depends on. `feeds` supplies the graph inputs it needs."""
    graph = model.graph
    nodes, needed = cone(graph, [tensor])
    init_names = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name in needed and vi.name not in init_names]
    sub = helper.make_graph(
        nodes, "evaluate", inputs, [helper.make_empty_tensor_value_info(tensor)],
        initializer=[t for t in graph.initializer if t.name in needed])
    sub_model = helper.make_model(sub, opset_imports=model.opset_import,
                                  ir_version=model.ir_version)
    return ReferenceEvaluator(sub_model).run(None, {vi.name: feeds[vi.name] for vi in inputs})[0]


def remove_dead_code(graph):
    """Drops nodes, initializers and value_info not needed for the graph outputs."""
    nodes, needed = cone(graph, [o.name for o in graph.output])
    replace_nodes(graph, nodes)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]  # stale (symbolic S); ONNX Runtime re-infers shapes


# --------------------------------------------------------------------------
# The rewrite
# --------------------------------------------------------------------------

def stream_feeds(graph):
    """Zero arrays for the (already one-frame) graph inputs without defaults."""
    init_names = {t.name for t in graph.initializer}
    feeds = {}
    for vi in graph.input:
        if vi.name in init_names:
            continue
        shape = static_shape(vi)
        assert all(isinstance(d, int) and d > 0 for d in shape), (vi.name, shape)
        feeds[vi.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    return feeds


def fix_inputs_to_one_frame(graph):
    """Sets every symbolic input dim (time axis S, and any symbolic batch) to 1.
    Returns {input name: time axis}."""
    time_axes = {}
    for vi in graph.input:
        for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
            if dim.HasField("dim_param"):
                if dim.dim_param == TIME_DIM:
                    time_axes[vi.name] = axis
                dim.Clear()
                dim.dim_value = 1
    return time_axes


def add_state(graph, states, name_in, name_out, shape, elem_type, init, origin):
    """Declares a state input/output pair. `init` is the initial value (ndarray);
    if it is not all zeros it becomes the input's default (same-name initializer)."""
    taken = {vi.name for vi in graph.input} | {vi.name for vi in graph.output}
    if name_in in taken or name_out in taken:
        raise SystemExit(f"state name clash: {name_in} / {name_out}")
    graph.input.append(helper.make_tensor_value_info(name_in, elem_type, shape))
    graph.output.append(helper.make_tensor_value_info(name_out, elem_type, shape))
    nonzero = bool(np.any(init != 0))
    if nonzero:
        default = init.astype(helper.tensor_dtype_to_np_dtype(elem_type))
        graph.initializer.append(numpy_helper.from_array(default, name_in))
    states.append({
        "input": name_in,
        "output": name_out,
        "shape": list(shape),
        "dtype": dtype_name(elem_type),
        "init": "graph_default" if nonzero else "zeros",
        "origin": origin,
    })


def rewrite_grus(model, states):
    """GRU initial_h -> graph input, Y_h -> graph output."""
    graph = model.graph
    feeds = stream_feeds(graph)
    for node in [n for n in graph.node if n.op_type == "GRU"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("layout", 0) != 0:
            raise SystemExit(f"{node.name}: GRU layout={attrs['layout']} is not supported")
        if len(node.input) > 4 and node.input[4]:
            raise SystemExit(f"{node.name}: GRU with sequence_lens is not supported")
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction != "forward":
            raise SystemExit(f"{node.name}: only forward GRUs can be streamed (got {direction})")
        hidden = int(attrs["hidden_size"])
        shape = [1, 1, hidden]  # [num_directions, batch, hidden]

        # The initial state: must not depend on input values (only on shapes).
        old_h0 = node.input[5] if len(node.input) > 5 else ""
        if old_h0:
            if depends_on_input_values(graph, old_h0):
                raise SystemExit(f"{node.name}: initial_h depends on input values")
            init = np.asarray(evaluate(model, old_h0, feeds), dtype=np.float32)
            if list(init.shape) != shape:
                raise SystemExit(f"{node.name}: initial_h shape {init.shape} != {shape}")
        else:
            init = np.zeros(shape, np.float32)  # ONNX default: zeros

        base = sanitize(node.name or node.output[0])
        name_in, name_out = f"h_in_{base}", f"h_out_{base}"
        while len(node.input) < 6:
            node.input.append("")
        node.input[5] = name_in
        while len(node.output) < 2:
            node.output.append("")
        if node.output[1]:
            rename_tensor(graph, node.output[1], name_out)
        else:
            node.output[1] = name_out
        add_state(graph, states, name_in, name_out, shape, TensorProto.FLOAT, init, {
            "op": "GRU", "node": node.name or node.output[0], "hidden_size": hidden,
            "linear_before_reset": int(attrs.get("linear_before_reset", 0)),
            "sequence_initial_h": old_h0 or "(none: zeros)",
            "meaning": "GRU hidden state after the previous frame",
        })


def conv_time_geometry(conv, time_axis):
    """(kernel, dilation, stride, pad_begin, pad_end) of a Conv/ConvTranspose along time."""
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    k = time_axis - 2  # spatial index of the time axis (N, C, spatial...)
    if k < 0:
        raise SystemExit(f"{conv.name}: time is not a spatial axis (axis {time_axis})")
    n_sp = len(attrs["kernel_shape"])
    dil = attrs.get("dilations", [1] * n_sp)[k]
    stride = attrs.get("strides", [1] * n_sp)[k]
    pads = attrs.get("pads", [0] * 2 * n_sp)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise SystemExit(f"{conv.name}: auto_pad is not supported")
    return attrs["kernel_shape"][k], dil, stride, pads[k], pads[n_sp + k]


def rewrite_time_pads(model, states, time_axes):
    """Pad (time) + Conv -> Concat(buf_in, x) + Conv, buf_out = last P frames."""
    graph = model.graph
    feeds = stream_feeds(graph)
    rewritten = []  # outputs of the Conv nodes now fed with history
    # Pads are identified by their output tensor (unique in an SSA graph), since
    # the node list is rebuilt after each rewrite.
    for pad_out in [n.output[0] for n in graph.node if n.op_type == "Pad"]:
        node = next(n for n in graph.node if n.op_type == "Pad" and n.output[0] == pad_out)
        pad_name = node.name or pad_out
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("mode", b"constant")
        if mode not in (b"constant", "constant"):
            raise SystemExit(f"{node.name}: Pad mode {mode} cannot be streamed")
        x = node.input[0]
        for t in node.input[1:]:
            if t and depends_on_input_values(graph, t):
                raise SystemExit(f"{node.name}: pads/value are not constant")
        pads = [int(p) for p in evaluate(model, node.input[1], feeds)]
        value = float(evaluate(model, node.input[2], feeds)) if len(node.input) > 2 and node.input[2] else 0.0
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]

        t_ax = time_axes[x]  # found by sequence_time_axes()
        p_begin, p_end = begin[t_ax], end[t_ax]
        if p_end != 0:
            # Padding future frames would make the streaming graph a delayed one;
            # DeepFilterNet3 has none inside its graphs (its lookahead is applied to
            # the features before the encoder), so this is reported, not handled.
            raise SystemExit(f"{node.name}: pads {p_end} future frames; a streaming "
                             f"version would need a {p_end}-frame delay")
        if p_begin < 0:
            raise SystemExit(f"{node.name}: crops {-p_begin} past frames; cannot be streamed")
        if p_begin == 0:
            continue

        # The padded tensor must feed only time convolutions that consume exactly
        # the P padded frames plus the current one.
        convs = consumers(graph, node.output[0])
        for conv in convs:
            if conv.op_type != "Conv":
                raise SystemExit(f"{node.name}: feeds {conv.op_type}, expected Conv")
            kt, dil, stride, cb, ce = conv_time_geometry(conv, t_ax)
            if stride != 1 or cb or ce or (kt - 1) * dil != p_begin:
                raise SystemExit(f"{conv.name}: time kernel {kt}, dilation {dil}, stride "
                                 f"{stride}, pads ({cb},{ce}) do not match the Pad ({p_begin})")

        # One-frame shape and type of the padded tensor, measured.
        x_value = evaluate(model, x, feeds)
        elem_type = helper.np_dtype_to_tensor_dtype(x_value.dtype)
        buf_shape = list(x_value.shape)
        buf_shape[t_ax] = p_begin

        base = sanitize(pad_name)
        name_in, name_out = f"buf_in_{base}", f"buf_out_{base}"
        cat = f"{base}_history"
        new_nodes = [helper.make_node("Concat", [name_in, x], [cat], name=f"{pad_name}_stream_concat", axis=t_ax)]
        starts, ends, axes = f"{base}_hist_starts", f"{base}_hist_ends", f"{base}_hist_axes"
        graph.initializer.extend([
            numpy_helper.from_array(np.array([-p_begin], np.int64), starts),
            numpy_helper.from_array(np.array([INT64_MAX], np.int64), ends),
            numpy_helper.from_array(np.array([t_ax], np.int64), axes),
        ])
        new_nodes.append(helper.make_node("Slice", [cat, starts, ends, axes], [name_out],
                                          name=f"{pad_name}_stream_slice"))
        feed_to_conv = cat
        other = [p for i, p in enumerate(pads) if i % rank != t_ax]
        if any(other):  # keep padding of the other axes
            rest = list(pads)
            rest[t_ax] = rest[rank + t_ax] = 0
            rest_name = f"{base}_other_pads"
            graph.initializer.append(numpy_helper.from_array(np.array(rest, np.int64), rest_name))
            value_name = node.input[2] if len(node.input) > 2 else ""
            feed_to_conv = f"{base}_padded"
            new_nodes.append(helper.make_node("Pad", [cat, rest_name, value_name], [feed_to_conv],
                                              name=f"{pad_name}_stream_pad", mode="constant"))

        conv_names = [c.name for c in convs]
        conv_kernels = [conv_time_geometry(c, t_ax)[0] for c in convs]

        # Splice: the new nodes take the Pad's place in the node list.
        for conv in convs:
            for i, name in enumerate(conv.input):
                if name == node.output[0]:
                    conv.input[i] = feed_to_conv
        nodes = []
        for n in graph.node:
            nodes.extend(new_nodes if n.op_type == "Pad" and n.output[0] == pad_out else [n])
        rewritten.extend(c.output[0] for c in convs)
        replace_nodes(graph, nodes)

        add_state(graph, states, name_in, name_out, buf_shape, elem_type,
                  np.full(buf_shape, value, x_value.dtype), {
                      "op": "Pad+Conv", "pad_node": pad_name,
                      "conv_nodes": conv_names, "tensor": x, "time_axis": t_ax,
                      "time_pads": [p_begin, p_end], "frames": p_begin,
                      "conv_time_kernel": conv_kernels,
                      "meaning": f"the previous {p_begin} frames of '{x}' (oldest first)",
                  })

    # Every other convolution must not look across frames.
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.output[0] not in rewritten:
            kt, dil, stride, cb, ce = conv_time_geometry(node, time_axes[node.input[0]])
            if kt != 1 or stride != 1 or cb or ce:
                raise SystemExit(f"{node.name}: time kernel {kt}/stride {stride}/pads ({cb},{ce}) "
                                 f"without an explicit Pad cannot be streamed")


def sequence_time_axes(model, names):
    """Time axis of tensors of a *sequence* graph. Dims are not reliably named
    (e.g. df_dec's output '235' has no 'S'), so the graph is run for two sequence
    lengths and the axis whose size follows S is taken."""
    shapes = []
    for length in (3, 5):
        feeds = {}
        for vi in model.graph.input:
            shape = [length if d == TIME_DIM else d for d in static_shape(vi)]
            feeds[vi.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        shapes.append([v.shape for v in ReferenceEvaluator(model).run(list(names), feeds)])
    axes = {}
    for name, a, b in zip(names, *shapes):
        moving = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        if len(moving) != 1 or b[moving[0]] - a[moving[0]] != 2:
            raise SystemExit(f"{name}: cannot find its time axis ({a} vs {b})")
        axes[name] = moving[0]
    return axes


def make_stream_model(model, name):
    """Returns (streaming model, description dict) for one shipped graph."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # private copy
    graph = model.graph
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < 11:
            raise SystemExit(f"{name}: opset {op.version} < 11 is not supported")
    # Time axes (as in the sequence graph) of the outputs and of the inputs of
    # every Pad and convolution.
    probe = [o.name for o in graph.output] + [
        n.input[0] for n in graph.node if n.op_type in ("Pad", "Conv", "ConvTranspose")]
    time_axes = sequence_time_axes(model, list(dict.fromkeys(probe)))
    time_axes.update(fix_inputs_to_one_frame(graph))

    states = []
    rewrite_grus(model, states)
    rewrite_time_pads(model, states, time_axes)
    remove_dead_code(graph)

    # Measure the real one-frame output shapes and declare them.
    feeds = stream_feeds(graph)
    names = [o.name for o in graph.output]
    values = ReferenceEvaluator(model).run(names, feeds)
    for out, val in zip(graph.output, values):
        out.type.tensor_type.shape.Clear()
        for d in val.shape:
            out.type.tensor_type.shape.dim.add().dim_value = int(d)

    graph.name = f"{name}_stream"
    model.producer_name = "manifold xtask/py/prepare_dfn3.py"
    model.producer_version = "1"
    model.doc_string = (f"DeepFilterNet3 {name}, one frame per call with explicit state; "
                        "see dfn3_stream.json")
    onnx.checker.check_model(model, full_check=True)

    state_in = {s["input"]: s for s in states}
    state_out = {s["output"]: s for s in states}

    def describe(vi, state_map, key, seq_time_axes):
        entry = {"name": vi.name, "shape": static_shape(vi),
                 "dtype": dtype_name(vi.type.tensor_type.elem_type)}
        if vi.name in state_map:
            entry["kind"] = "state"
            entry[key] = state_map[vi.name]["output" if key == "updated_by" else "input"]
        else:
            entry["kind"] = "data"
            # the axis that is S in the sequence graph (length 1 here)
            entry["time_axis"] = seq_time_axes[vi.name]
        return entry

    desc = {
        "file": f"{name}_stream.onnx",
        "source_file": f"{name}.onnx",
        "inputs": [describe(vi, state_in, "updated_by", time_axes) for vi in graph.input],
        "outputs": [describe(vi, state_out, "updates", time_axes) for vi in graph.output],
        "states": states,
        "output_delay_frames": 0,
        "relation": ("streaming output at step t == sequence output at frame t for every "
                     "data output (delay 0), when all states start at their initial values "
                     "and the same input frames are fed in order"),
    }
    return model, desc


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def read_tarball(path):
    """{basename: bytes} for the members we need; exactly one of each."""
    wanted = {f"{g}.onnx" for g in GRAPHS} | {"config.ini"}
    found = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base in wanted:
                if base in found:
                    raise SystemExit(f"{path}: more than one {base}")
                found[base] = tar.extractfile(member).read()
    missing = sorted(wanted - set(found))
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    return found


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def model_config(ini_bytes):
    cfg = configparser.ConfigParser()
    cfg.read_string(ini_bytes.decode("utf-8"))
    df, net = cfg["df"], cfg["deepfilternet"]
    return {
        "sr": df.getint("sr"), "fft_size": df.getint("fft_size"), "hop_size": df.getint("hop_size"),
        "nb_erb": df.getint("nb_erb"), "nb_df": df.getint("nb_df"),
        "df_order": df.getint("df_order"), "df_lookahead": df.getint("df_lookahead"),
        "conv_lookahead": net.getint("conv_lookahead"),
    }


def pipeline_notes(cfg):
    la, dla, order, hop, n_fft = (cfg["conv_lookahead"], cfg["df_lookahead"], cfg["df_order"],
                                  cfg["hop_size"], cfg["fft_size"])
    past = order - 1 - dla
    return {
        "graph_level": ("All three streaming graphs have delay 0: the shipped graphs pad time "
                        "only at the beginning (causal), so streaming step t == sequence frame "
                        "t. erb_dec and df_dec at step t take the enc outputs of the same step."),
        "conv_lookahead_frames": la,
        "model_level": (
            f"The conv_lookahead ({la}) is applied outside the graphs: DeepFilterNet's "
            f"DfNet.forward feeds the encoder with features shifted by {la} frames "
            f"(ConstantPad2d((0, 0, -{la}, {la}))): model frame tau uses feature frame "
            f"tau+{la}; feature frames 0..{la - 1} are dropped and {la} zero frames are "
            f"appended. In streaming this is a delay of {la} frames: skip the first {la} "
            f"feature frames; feeding feature frame n (from STFT frame n) at step "
            f"s = n-{la} gives m, lsnr, coefs and alpha for STFT frame n-{la}. To end a "
            f"stream, feed {la} frames of zero features."),
        "enhanced_frame_for_feature_frame_n": f"n - {la}",
        "deep_filter": (
            f"For spectrum frame tau and bin f < nb_df: Y[tau,f] = sum_{{i=0}}^{{{order - 1}}} "
            f"X[tau-{past}+i, f] * C_i[tau, f] (complex product, no conjugate), with "
            f"C_i = coefs[..., f, 2i] + j*coefs[..., f, 2i+1] and X = 0 outside the signal. "
            f"It needs X up to tau+{dla}; with tau = n-{la} that is STFT frame "
            f"{'n' if la == dla else f'n-{la - dla}'}. "
            f"In DeepFilterNet 0.5.6 (deepfilternet3.py) X is the unmasked noisy spectrum; "
            f"bins >= nb_df take the ERB-masked spectrum."),
        "algorithmic_latency_samples": la * hop + (n_fft - hop),
        "extra_outputs": {"df_dec/235": "sigmoid(df_fc_a) 'alpha' [1,1,1]; not used by "
                                        "DfNet.forward in DeepFilterNet 0.5.6"},
        "source": "facts read from deepfilternet 0.5.6 (PyPI) df/deepfilternet3.py, df/multiframe.py",
    }


def to_json(doc):
    """Indented JSON with lists of numbers/strings (shapes) kept on one line."""
    def inline(obj):
        return isinstance(obj, list) and all(isinstance(x, (int, float, str)) for x in obj)

    def dump(obj, indent):
        pad, inner = "  " * indent, "  " * (indent + 1)
        if isinstance(obj, dict):
            items = [f"{inner}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}" if items else "{}"
        if isinstance(obj, list) and not inline(obj):
            items = [f"{inner}{dump(v, indent + 1)}" for v in obj]
            return "[\n" + ",\n".join(items) + f"\n{pad}]" if items else "[]"
        return json.dumps(obj)

    return dump(doc, 0) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tarball")
    ap.add_argument("out_dir")
    args = ap.parse_args()

    with open(args.tarball, "rb") as f:
        tar_sha = hashlib.sha256(f.read()).hexdigest()
    files = read_tarball(args.tarball)
    cfg = model_config(files["config.ini"])
    os.makedirs(args.out_dir, exist_ok=True)

    doc = {
        "format": "manifold-dfn3-stream",
        "version": 1,
        "frames_per_call": 1,
        "source": {
            "tarball_sha256": tar_sha,
            "members_sha256": {k: hashlib.sha256(files[k]).hexdigest() for k in sorted(files)},
            "onnx_version": onnx.__version__,
        },
        "config": cfg,
        "usage": ("Per call feed one frame of every data input plus every state input; "
                  "after the call copy each state output into the state input it updates. "
                  "Initial state values: 'zeros', or 'graph_default' (the graph holds the "
                  "default as an initializer of the input's name, so the input may be "
                  "omitted on the first call)."),
        "alignment": pipeline_notes(cfg),
        "graphs": {},
    }
    for name in GRAPHS:
        seq = onnx.load_from_string(files[f"{name}.onnx"])
        stream, desc = make_stream_model(seq, name)
        write_atomic(os.path.join(args.out_dir, desc["file"]), stream.SerializeToString())
        doc["graphs"][name] = desc
        print(f"{name}: {len(desc['states'])} states -> {desc['file']}")

    write_atomic(os.path.join(args.out_dir, "config.ini"), files["config.ini"])
    write_atomic(os.path.join(args.out_dir, "dfn3_stream.json"), to_json(doc).encode("utf-8"))
    print(f"wrote {args.out_dir}/dfn3_stream.json")


if __name__ == "__main__":
    main()
