/// Why a state dict is not a ResNet18 this appliance can run. Every offending key is named.
public struct LayoutError: Error, Equatable, CustomStringConvertible {
    public var missing: [String] = []
    public var unexpected: [String] = []
    /// "name: expected [..], found [..]"
    public var misshaped: [String] = []
    public var other: [String] = []

    public var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && misshaped.isEmpty && other.isEmpty }

    public var description: String {
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing keys: " + missing.joined(separator: ", ")) }
        if !unexpected.isEmpty { parts.append("unexpected keys: " + unexpected.joined(separator: ", ")) }
        if !misshaped.isEmpty { parts.append("wrong shapes: " + misshaped.joined(separator: "; ")) }
        parts.append(contentsOf: other)
        return parts.joined(separator: "\n")
    }
}

/// The two state-dict layouts of ResNet18 that engineers bring, and how they fold into `ResNet18Parameters`.
public enum ResNet18Layout {
    static let bnEpsilon = 1e-5
    static let stages = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]  // (in, out, first stride)

    /// torchvision's `layerN` is fastai's body index `0.(N+3)`.
    static func prefix(_ layout: WeightLayout, stage: Int) -> String {
        layout == .torchvision ? "layer\(stage)" : "0.\(stage + 3)"
    }

    static func stemNames(_ layout: WeightLayout) -> (conv: String, bn: String) {
        layout == .torchvision ? ("conv1", "bn1") : ("0.0", "0.1")
    }

    /// torchvision names `conv1.weight`; a fastai learner's body starts `0.0.weight`.
    public static func detect(_ names: some Collection<String>) -> WeightLayout? {
        let set = Set(names)
        if set.contains("conv1.weight") { return .torchvision }
        if set.contains("0.0.weight") { return .fastai }
        return nil
    }

    /// Every key the layout needs, with its shape, for `numClasses` outputs.
    public static func expectedShapes(_ layout: WeightLayout, numClasses: Int) -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        func bn(_ name: String, _ c: Int) {
            for p in ["weight", "bias", "running_mean", "running_var"] { shapes["\(name).\(p)"] = [c] }
        }
        let stem = stemNames(layout)
        shapes["\(stem.conv).weight"] = [64, 3, 7, 7]
        bn(stem.bn, 64)
        for (i, (cin, cout, stride)) in stages.enumerated() {
            let p = prefix(layout, stage: i + 1)
            for b in 0...1 {
                let inC = b == 0 ? cin : cout
                shapes["\(p).\(b).conv1.weight"] = [cout, inC, 3, 3]
                bn("\(p).\(b).bn1", cout)
                shapes["\(p).\(b).conv2.weight"] = [cout, cout, 3, 3]
                bn("\(p).\(b).bn2", cout)
                if b == 0 && (stride != 1 || cin != cout) {
                    shapes["\(p).\(b).downsample.0.weight"] = [cout, inC, 1, 1]
                    bn("\(p).\(b).downsample.1", cout)
                }
            }
        }
        switch layout {
        case .torchvision:
            shapes["fc.weight"] = [numClasses, 512]
            shapes["fc.bias"] = [numClasses]
        case .fastai:
            bn("1.2", 1024)
            shapes["1.4.weight"] = [512, 1024]
            bn("1.6", 512)
            shapes["1.8.weight"] = [numClasses, 512]
        }
        return shapes
    }

    /// Checks names, shapes and values, then folds every BatchNorm. `layout` nil: detected.
    public static func load(_ file: Safetensors.File, layout forced: WeightLayout? = nil) throws(LayoutError) -> ResNet18Parameters {
        let names = Array(file.tensors.keys) + Array(file.nonFloatTensors.keys)
        guard let layout = forced ?? detect(names) else {
            throw LayoutError(other: ["neither a torchvision ResNet18 (conv1.weight) nor a fastai learner (0.0.weight); use --layout"])
        }
        let classKey = layout == .torchvision ? "fc.weight" : "1.8.weight"
        let numClasses = file.tensors[classKey]?.shape.first ?? 0
        var error = LayoutError()
        if numClasses < 1 { error.other.append("cannot tell the number of classes: \(classKey) is missing or empty") }
        let expected = expectedShapes(layout, numClasses: max(numClasses, 1))
        // BatchNorm's step counter carries no weight; other integer tensors are unexpected.
        let ignored = Set(file.nonFloatTensors.keys.filter { $0.hasSuffix("num_batches_tracked") })
        error.missing = expected.keys.filter { file.tensors[$0] == nil }.sorted()
        error.unexpected = (Set(names).subtracting(expected.keys).subtracting(ignored)).sorted()
        for (name, shape) in expected.sorted(by: { $0.key < $1.key }) {
            guard let t = file.tensors[name] else { continue }
            if t.shape != shape { error.misshaped.append("\(name): expected \(shape), found \(t.shape)") }
            if !t.values.allSatisfy({ $0.isFinite }) { error.other.append("\(name) holds NaN or infinite values") }
        }
        guard error.isEmpty else { throw error }
        return fold(file.tensors, layout: layout)
    }

    static func fold(_ t: [String: NamedTensor], layout: WeightLayout) -> ResNet18Parameters {
        func conv(_ convName: String, _ bnName: String, stride: Int, padding: Int) -> ConvParameters {
            let w = t["\(convName).weight"]!
            let (o, i, k) = (w.shape[0], w.shape[1], w.shape[2])
            let (scale, shift) = batchNorm(bnName)
            var weights = w.values
            let per = i * k * k
            for oc in 0..<o {
                for j in 0..<per { weights[oc * per + j] = Float(Double(weights[oc * per + j]) * scale[oc]) }
            }
            return ConvParameters(outChannels: o, inChannels: i, kernel: k, stride: stride, padding: padding,
                                  weights: weights, bias: shift.map { Float($0) })
        }
        /// y = x * scale + shift, per channel.
        func batchNorm(_ name: String) -> (scale: [Double], shift: [Double]) {
            let g = t["\(name).weight"]!.values, b = t["\(name).bias"]!.values
            let m = t["\(name).running_mean"]!.values, v = t["\(name).running_var"]!.values
            let scale = (0..<g.count).map { Double(g[$0]) / (Double(v[$0]) + bnEpsilon).squareRoot() }
            let shift = (0..<g.count).map { Double(b[$0]) - Double(m[$0]) * scale[$0] }
            return (scale, shift)
        }
        /// Linear(BN(x)) = (W diag(s)) x + W t (+ b): exact.
        func linear(after bn: String?, _ name: String) -> LinearParameters {
            let w = t["\(name).weight"]!
            let (o, i) = (w.shape[0], w.shape[1])
            var bias = t["\(name).bias"]?.values.map { Double($0) } ?? [Double](repeating: 0, count: o)
            var weights = w.values
            if let bn {
                let (scale, shift) = batchNorm(bn)
                for r in 0..<o {
                    var acc = 0.0
                    for c in 0..<i {
                        acc += Double(w.values[r * i + c]) * shift[c]
                        weights[r * i + c] = Float(Double(w.values[r * i + c]) * scale[c])
                    }
                    bias[r] += acc
                }
            }
            return LinearParameters(outFeatures: o, inFeatures: i, weights: weights, bias: bias.map { Float($0) })
        }

        let stemNames = stemNames(layout)
        let stem = conv(stemNames.conv, stemNames.bn, stride: 2, padding: 3)
        var blocks: [BasicBlockParameters] = []
        for (s, (_, _, stride)) in stages.enumerated() {
            let p = prefix(layout, stage: s + 1)
            for b in 0...1 {
                let first = b == 0 ? stride : 1
                let down = t["\(p).\(b).downsample.0.weight"] != nil
                    ? conv("\(p).\(b).downsample.0", "\(p).\(b).downsample.1", stride: first, padding: 0) : nil
                blocks.append(BasicBlockParameters(
                    conv1: conv("\(p).\(b).conv1", "\(p).\(b).bn1", stride: first, padding: 1),
                    conv2: conv("\(p).\(b).conv2", "\(p).\(b).bn2", stride: 1, padding: 1),
                    downsample: down))
            }
        }
        let head: HeadParameters = layout == .torchvision
            ? .torchvision(fc: linear(after: nil, "fc"))
            : .fastai(fc1: linear(after: "1.2", "1.4"), fc2: linear(after: "1.6", "1.8"))
        return ResNet18Parameters(stem: stem, blocks: blocks, head: head)
    }
}
