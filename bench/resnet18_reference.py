"""Independent reference for ichd's engines: builds ResNet18 from the same safetensors in ONNX Runtime.

Shared by bench/verify_engines.py (correctness) and the kernel benchmark of a later issue. Numpy, onnx and
onnxruntime come from PyPI (bench/requirements.txt); the appliance itself never needs Python."""
import json
import struct

import numpy as np

STAGES = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]


def expected_shapes(layout, num_classes):
    shapes = {}

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{p}"] = [c]

    conv, bnn = ("conv1", "bn1") if layout == "torchvision" else ("0.0", "0.1")
    shapes[f"{conv}.weight"] = [64, 3, 7, 7]
    bn(bnn, 64)
    for i, (cin, cout, stride) in enumerate(STAGES):
        p = f"layer{i + 1}" if layout == "torchvision" else f"0.{i + 4}"
        for b in range(2):
            inc = cin if b == 0 else cout
            shapes[f"{p}.{b}.conv1.weight"] = [cout, inc, 3, 3]
            bn(f"{p}.{b}.bn1", cout)
            shapes[f"{p}.{b}.conv2.weight"] = [cout, cout, 3, 3]
            bn(f"{p}.{b}.bn2", cout)
            if b == 0 and (stride != 1 or cin != cout):
                shapes[f"{p}.{b}.downsample.0.weight"] = [cout, inc, 1, 1]
                bn(f"{p}.{b}.downsample.1", cout)
    if layout == "torchvision":
        shapes["fc.weight"] = [num_classes, 512]
        shapes["fc.bias"] = [num_classes]
    else:
        bn("1.2", 1024)
        shapes["1.4.weight"] = [512, 1024]
        bn("1.6", 512)
        shapes["1.8.weight"] = [num_classes, 512]
    return shapes


def random_state_dict(layout, num_classes, seed):
    """He-initialised convolutions, BatchNorm gammas near 1, positive running variances, a small classifier."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in sorted(expected_shapes(layout, num_classes).items()):
        if name.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("running_mean") or (name.endswith(".bias") and not name.startswith("fc")):
            v = rng.normal(0, 0.1, shape)
        elif len(shape) == 1 and name.endswith(".weight"):
            v = rng.uniform(0.75, 1.25, shape)
        elif len(shape) == 1:
            v = rng.normal(0, 0.1, shape)
        elif name in ("fc.weight", "1.8.weight"):
            # the classifier: small, so that logits land in the sigmoid's working range (|logit| of a few units)
            v = rng.normal(0, 0.1 / np.sqrt(shape[1]), shape)
        else:
            v = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        out[name] = v.astype(np.float32)
    return out


def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "F16":
            raw = a.astype(np.float16).tobytes()
        elif dtype == "BF16":
            raw = (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # truncation: exact for the check below
        else:
            raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def as_stored(tensors, dtype):
    """The float values a reader recovers from tensors written in `dtype`."""
    if dtype == "F16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    if dtype == "BF16":
        return {k: ((v.view(np.uint32) >> 16) << 16).view(np.float32) for k, v in tensors.items()}
    return tensors


def build_onnx(sd, layout, num_classes):
    """The network as ONNX operators, BatchNorm unfolded: nothing shared with ichd's code."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def fresh(prefix):
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def conv_bn(x, conv, bn, stride, pad, relu):
        y = fresh("conv")
        nodes.append(helper.make_node("Conv", [x, const(conv + ".weight", sd[conv + ".weight"])], [y],
                                      strides=[stride, stride], pads=[pad] * 4))
        z = fresh("bn")
        nodes.append(helper.make_node("BatchNormalization",
                                      [y] + [const(f"{bn}.{p}", sd[f"{bn}.{p}"]) for p in ("weight", "bias", "running_mean", "running_var")],
                                      [z], epsilon=1e-5))
        if relu:
            r = fresh("relu")
            nodes.append(helper.make_node("Relu", [z], [r]))
            return r
        return z

    conv, bnn = ("conv1", "bn1") if layout == "torchvision" else ("0.0", "0.1")
    x = conv_bn("input", conv, bnn, 2, 3, True)
    mp = fresh("maxpool")
    nodes.append(helper.make_node("MaxPool", [x], [mp], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x = mp
    for i, (cin, cout, stride) in enumerate(STAGES):
        p = f"layer{i + 1}" if layout == "torchvision" else f"0.{i + 4}"
        for b in range(2):
            s = stride if b == 0 else 1
            mid = conv_bn(x, f"{p}.{b}.conv1", f"{p}.{b}.bn1", s, 1, True)
            out = conv_bn(mid, f"{p}.{b}.conv2", f"{p}.{b}.bn2", 1, 1, False)
            short = x
            if f"{p}.{b}.downsample.0.weight" in sd:
                short = conv_bn(x, f"{p}.{b}.downsample.0", f"{p}.{b}.downsample.1", s, 0, False)
            added, r = fresh("add"), fresh("relu")
            nodes.append(helper.make_node("Add", [out, short], [added]))
            nodes.append(helper.make_node("Relu", [added], [r]))
            x = r
    nodes.append(helper.make_node("Identity", [x], ["features"]))
    if layout == "torchvision":
        gap, flat = fresh("gap"), fresh("flat")
        nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
        nodes.append(helper.make_node("Flatten", [gap], [flat], axis=1))
        nodes.append(helper.make_node("Gemm", [flat, const("fc.weight", sd["fc.weight"]), const("fc.bias", sd["fc.bias"])],
                                      ["logits"], transB=1))
    else:
        gmp, gap, cat, flat = fresh("gmp"), fresh("gap"), fresh("cat"), fresh("flat")
        nodes.append(helper.make_node("GlobalMaxPool", [x], [gmp]))
        nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
        nodes.append(helper.make_node("Concat", [gmp, gap], [cat], axis=1))
        nodes.append(helper.make_node("Flatten", [cat], [flat], axis=1))

        def bn1d(v, name):
            y = fresh("bn1d")
            nodes.append(helper.make_node("BatchNormalization", [v] + [const(f"{name}.{p}", sd[f"{name}.{p}"])
                                                                       for p in ("weight", "bias", "running_mean", "running_var")],
                                          [y], epsilon=1e-5))
            return y

        h = bn1d(flat, "1.2")
        h1, hr = fresh("fc1"), fresh("relu")
        nodes.append(helper.make_node("MatMul", [h, const("1.4.weight.T", sd["1.4.weight"].T)], [h1]))
        nodes.append(helper.make_node("Relu", [h1], [hr]))
        h2 = bn1d(hr, "1.6")
        nodes.append(helper.make_node("MatMul", [h2, const("1.8.weight.T", sd["1.8.weight"].T)], ["logits"]))
    graph = helper.make_graph(nodes, "resnet18", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes]),
                               helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 512, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def session(model, threads=1, disable_optimizations=True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if disable_optimizations:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
