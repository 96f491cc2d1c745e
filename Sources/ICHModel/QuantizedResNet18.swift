/// Affine quantisation of one activation tensor: real = scale x (q - zeroPoint), q an unsigned integer of `bits`
/// bits: a byte (8, every model before format version 3) or 12 bits stored in a UInt16 (a model with fine
/// convolution inputs, format version 3), which the engine feeds to the byte kernels as two byte planes.
public struct QuantParams: Codable, Sendable, Equatable {
    public var scale: Float
    public var zeroPoint: Int32
    public var bits: Int

    /// The widths the engine runs: bytes, and 12 bits = a high byte and a 4-bit low part (see
    /// ICHKernels/FineActivations.swift).
    public static let supportedBits = [8, 12]

    public init(scale: Float, zeroPoint: Int32, bits: Int = 8) {
        precondition(Self.supportedBits.contains(bits))
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.bits = bits
        precondition(scale > 0 && scale.isFinite && (0...maximum).contains(zeroPoint))
    }

    /// The largest level: 255 for bytes, 4095 for 12 bits.
    public var maximum: Int32 { Self.maximum(bits: bits) }

    static func maximum(bits: Int) -> Int32 { (1 << Int32(bits)) - 1 }

    /// Whether the parameters can be used (what a model file must hold).
    public var isValid: Bool {
        Self.supportedBits.contains(bits) && scale > 0 && scale.isFinite && (0...maximum).contains(zeroPoint)
    }

    enum CodingKeys: String, CodingKey { case scale, zeroPoint = "zero_point", bits }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scale = try c.decode(Float.self, forKey: .scale)
        zeroPoint = try c.decode(Int32.self, forKey: .zeroPoint)
        bits = try c.decodeIfPresent(Int.self, forKey: .bits) ?? 8  // files before format version 3 hold bytes only
    }

    /// `bits` only when it is not 8, so byte models keep the metadata older readers know.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scale, forKey: .scale)
        try c.encode(zeroPoint, forKey: .zeroPoint)
        if bits != 8 { try c.encode(bits, forKey: .bits) }
    }

    /// The parameters that cover [lo, hi] (widened to include 0, so that 0 is exact: padding and ReLU).
    public static func covering(_ lo: Float, _ hi: Float, bits: Int = 8) -> QuantParams {
        let lo = min(lo, 0), hi = max(hi, 0)
        let top = Float(maximum(bits: bits))
        let scale = hi > lo ? (hi - lo) / top : 1
        let zero = Int32(min(top, max(0, (-lo / scale).rounded(.toNearestOrEven))))
        return QuantParams(scale: scale, zeroPoint: zero, bits: bits)
    }

    /// The level of x: rounded half to even, clamped to 0...maximum.
    @inline(__always)
    public func level(_ x: Float) -> Int32 {
        let q = (x / scale).rounded(.toNearestOrEven) + Float(zeroPoint)
        return Int32(min(max(q, 0), Float(maximum)))
    }

    /// The byte of x (8-bit parameters).
    @inline(__always)
    public func quantize(_ x: Float) -> UInt8 { UInt8(level(x)) }

    @inline(__always)
    public func dequantize(_ q: UInt8) -> Float { dequantize(level: Int32(q)) }

    @inline(__always)
    public func dequantize(level q: Int32) -> Float { scale * Float(q - zeroPoint) }
}

/// Quantisation of one tensor of the int16 shortcut path: real = scale x q, q in -32767...32767, symmetric
/// (no zero point). The shortcut path (block outputs as the residual adds and the pool read them, downsample
/// outputs, pooled features) carries the residual stream with a step 16 to 32 times finer than the bytes',
/// while the convolutions keep reading bytes: measured on the bundled model, the stream's rounding is most of
/// the int8 network's error (docs/converting.md).
public struct WideQuantParams: Codable, Sendable, Equatable {
    public var scale: Float

    public init(scale: Float) {
        precondition(scale > 0 && scale.isFinite)
        self.scale = scale
    }

    /// Calibration saw at most this many times smaller values than the range covers: values beyond what the
    /// calibration slices showed still pass unclipped, and the step stays at most range / 8192, 32 times
    /// finer than a byte's range / 255.
    public static let headroom: Float = 4

    /// The parameters that cover [lo, hi] with `headroom`.
    public static func covering(_ lo: Float, _ hi: Float) -> WideQuantParams {
        let m = max(abs(lo), abs(hi))
        return WideQuantParams(scale: m > 0 ? headroom * m / 32767 : 1)
    }

    @inline(__always)
    public func dequantize(_ q: Int16) -> Float { scale * Float(q) }
}

/// A convolution in int8: weights symmetric per output channel (q in -127...127, real = weightScales[o] x q),
/// bias as int32 in units of inputScale x weightScales[o], so it adds straight into the accumulator.
public struct QuantizedConv: Sendable, Equatable {
    public var outChannels: Int
    public var inChannels: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Int
    public var weights: [Int8]
    public var weightScales: [Float]
    public var bias: [Int32]

    public init(outChannels: Int, inChannels: Int, kernel: Int, stride: Int, padding: Int,
                weights: [Int8], weightScales: [Float], bias: [Int32]) {
        precondition(weights.count == outChannels * inChannels * kernel * kernel)
        precondition(weightScales.count == outChannels && bias.count == outChannels)
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.weights = weights
        self.weightScales = weightScales
        self.bias = bias
    }
}

/// A fully connected layer in int8, same scheme as `QuantizedConv` (weights [out][in]).
public struct QuantizedLinear: Sendable, Equatable {
    public var outFeatures: Int
    public var inFeatures: Int
    public var weights: [Int8]
    public var weightScales: [Float]
    public var bias: [Int32]

    public init(outFeatures: Int, inFeatures: Int, weights: [Int8], weightScales: [Float], bias: [Int32]) {
        precondition(weights.count == outFeatures * inFeatures && weightScales.count == outFeatures && bias.count == outFeatures)
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.weights = weights
        self.weightScales = weightScales
        self.bias = bias
    }
}

public struct QuantizedBlock: Sendable, Equatable {
    public var conv1: QuantizedConv
    public var conv2: QuantizedConv
    public var downsample: QuantizedConv?
}

public enum QuantizedHead: Sendable, Equatable {
    case torchvision(fc: QuantizedLinear)
    /// fastai's head runs in float32 on the dequantised pooled features (BatchNorm1d folded as in
    /// `HeadParameters`): 0.5 million multiply-adds beside the body's 2.4 billion. In int8 its first BatchNorm1d's
    /// gains (up to ~90 on a trained head) set fc1's per-row weight scales and the head amplified the rounding
    /// (measured: docs/converting.md, "The fastai head in float").
    case fastai(fc1: LinearParameters, fc2: LinearParameters)
}

/// The int8 ResNet18 as the model file stores it. Activations are unsigned bytes with per-tensor
/// `QuantParams`, named as the float executor names them ("input", "stem", "layer1.0.conv1", "layer1.0",
/// "layer2.0.downsample", ..., "pool"); the fastai head's hidden features are float.
///
/// With an int16 shortcut path (`wideActivations` not empty, format version 2), the block outputs are kept
/// twice, as bytes for the next convolutions and as int16 for the residual adds and the pool; the downsample
/// outputs and the pooled features exist only as int16 (so they have no byte parameters).
public struct QuantizedResNet18: Sendable, Equatable {
    public var stem: QuantizedConv
    public var blocks: [QuantizedBlock]
    public var head: QuantizedHead
    public var activations: [String: QuantParams]
    public var wideActivations: [String: WideQuantParams]

    public init(stem: QuantizedConv, blocks: [QuantizedBlock], head: QuantizedHead, activations: [String: QuantParams],
                wideActivations: [String: WideQuantParams] = [:]) {
        self.stem = stem
        self.blocks = blocks
        self.head = head
        self.activations = activations
        self.wideActivations = wideActivations
    }

    public var hasWideShortcut: Bool { !wideActivations.isEmpty }

    /// The width of the activations convolutions read (every byte-view activation shares it): 8, or 12 for fine
    /// convolution inputs (format version 3, always with the int16 shortcut path).
    public var activationBits: Int { activations["input"]?.bits ?? 8 }

    /// The scale of the pooled features the head's first layer reads.
    public var pooledScale: Float { wideActivations["pool"]?.scale ?? activations["pool"]!.scale }

    public var numClasses: Int {
        switch head {
        case .torchvision(let fc): fc.outFeatures
        case .fastai(_, let fc2): fc2.outFeatures
        }
    }

    /// The same network with `shift[c]` subtracted from logit c, through the last layer's bias (int32, or float
    /// for the fastai head): empirical bias correction of the classifier, the mean int8-minus-float logit on
    /// calibration slices.
    public func correctingLogits(by shift: [Float]) -> QuantizedResNet18 {
        func corrected(_ l: QuantizedLinear, inputScale: Float) -> QuantizedLinear {
            var l = l
            for c in 0..<l.outFeatures {
                let units = Double(shift[c]) / (Double(inputScale) * Double(l.weightScales[c]))
                l.bias[c] = Int32(clamping: Int64(Double(l.bias[c]) - units.rounded(.toNearestOrEven)))
            }
            return l
        }
        var out = self
        switch head {
        case .torchvision(let fc): out.head = .torchvision(fc: corrected(fc, inputScale: pooledScale))
        case .fastai(let fc1, var fc2):
            for c in 0..<fc2.outFeatures { fc2.bias[c] -= shift[c] }
            out.head = .fastai(fc1: fc1, fc2: fc2)
        }
        return out
    }

    /// Every activation name the executor needs byte parameters for, whichever the head (`wideShortcut`: in a
    /// model with an int16 shortcut path, whose downsample outputs and pooled features have only int16 parameters).
    public static func activationNames(wideShortcut: Bool = false) -> [String] {
        var names = ["input", "stem"]
        for (i, block) in ResNet18Parameters.blockNames.enumerated() {
            names.append("\(block).conv1")
            if [2, 4, 6].contains(i) && !wideShortcut { names.append("\(block).downsample") }
            names.append(block)
        }
        if !wideShortcut { names.append("pool") }
        return names
    }

    /// The activations of the int16 shortcut path: block outputs, downsample outputs, pooled features.
    public static let wideActivationNames: [String] = ResNet18Parameters.blockNames.enumerated().flatMap { i, block in
        [2, 4, 6].contains(i) ? ["\(block).downsample", block] : [block]
    } + ["pool"]
}

/// Float weights to int8, per output channel, symmetric.
public enum WeightQuantizer {
    /// The grid of each of `rows` rows of `w`: scale = max|w| / 127 (1 for an all-zero row).
    public static func scales(_ w: [Float], rows: Int) -> [Float] {
        let per = w.count / rows
        return (0..<rows).map { r in
            let m = w[(r * per)..<((r + 1) * per)].map { abs($0) }.max() ?? 0
            return m > 0 ? m / 127 : 1
        }
    }

    /// Returns (q, scale) with q each weight rounded to the nearest step of its row's scale (`scales`, or the
    /// given ones).
    public static func quantize(_ w: [Float], rows: Int, scales given: [Float]? = nil) -> (values: [Int8], scales: [Float]) {
        let per = w.count / rows, s = given ?? scales(w, rows: rows)
        let q = w.indices.map { Int8(min(max((w[$0] / s[$0 / per]).rounded(.toNearestOrEven), -127), 127)) }
        return (q, s)
    }

    /// The largest bias an int32 accumulator starts from, in its units (inputScale x weightScale): beyond it the
    /// bias is clamped (`bias`).
    public static let biasLimit = Double(1 << 30)

    /// Each row's grid for a layer with bias `b` reading inputs of `inputScale`: `scales`, widened where the
    /// bias would pass `biasLimit` units, to put it at half the limit (room for bias correction's shift). A
    /// channel whose weights are negligible beside its bias (nearly dead after BatchNorm folding) then keeps its
    /// bias, and its weights round on a coarser grid, instead of the bias being clamped. (The accumulator still
    /// has room: a start of 2^30 plus 4608 x 255 x 127 stays below 2^31.) Inputs of 12 bits make the units 16
    /// times smaller: one such channel of the bundled model sits at 0.51 of the limit with bytes, and with 12
    /// bits its bias had been clamped to an eighth (the trained models' 12-bit logits moved: docs/converting.md).
    public static func grid(_ w: [Float], rows: Int, bias b: [Float], inputScale: Float) -> [Float] {
        zip(scales(w, rows: rows), b).map { s, bias in
            let units = Double(abs(bias)) / Double(inputScale)
            return units / Double(s) > biasLimit ? Float(units / (biasLimit / 2)) : s
        }
    }

    /// Bias in accumulator units (inputScale x weightScale), clamped to what an int32 accumulator can start from.
    public static func bias(_ b: [Float], inputScale: Float, weightScales: [Float]) -> [Int32] {
        zip(b, weightScales).map { bias, ws in
            let v = (Double(bias) / (Double(inputScale) * Double(ws))).rounded(.toNearestOrEven)
            return Int32(min(max(v, -biasLimit), biasLimit))
        }
    }

    /// `integers` (rounded on `scales`' grid by another method) where a row kept that grid, else each weight
    /// rounded to nearest on `grid`.
    static func rounded(_ w: [Float], rows: Int, grid: [Float], integers: [Int8]?) -> [Int8] {
        let nearest = quantize(w, rows: rows, scales: grid).values
        guard let integers else { return nearest }
        let per = w.count / rows, base = scales(w, rows: rows)
        return w.indices.map { grid[$0 / per] == base[$0 / per] ? integers[$0] : nearest[$0] }
    }

    /// Bias correction (Nagel et al., 2019): quantising weights moves each output's expectation by
    /// sum over inputs of (w_q - w) x E[input]; subtracting that from the bias removes the systematic part of the
    /// weight error. `inputMeans` holds E[input] per input channel (from calibration); nil: no correction.
    static func correctedBias(_ bias: [Float], weights: [Float], quantized: [Int8], scales: [Float], inputMeans: [Float]?,
                              inChannels: Int) -> [Float] {
        guard let means = inputMeans, means.count == inChannels else { return bias }
        let perOutput = weights.count / bias.count, perInput = perOutput / inChannels
        return bias.indices.map { o in
            var shift = 0.0
            for j in 0..<perOutput {
                let k = o * perOutput + j
                shift += (Double(quantized[k]) * Double(scales[o]) - Double(weights[k])) * Double(means[j / perInput])
            }
            return Float(Double(bias[o]) - shift)
        }
    }

    /// `integers`: the layer's weights already rounded on this grid by another method (GPTQ, in the converter);
    /// nil: each to its nearest step.
    public static func conv(_ p: ConvParameters, inputScale: Float, inputMeans: [Float]? = nil, integers: [Int8]? = nil) -> QuantizedConv {
        precondition(integers.map { $0.count == p.weights.count } ?? true)
        let s = grid(p.weights, rows: p.outChannels, bias: p.bias, inputScale: inputScale)
        let w = rounded(p.weights, rows: p.outChannels, grid: s, integers: integers)
        let b = correctedBias(p.bias, weights: p.weights, quantized: w, scales: s, inputMeans: inputMeans, inChannels: p.inChannels)
        return QuantizedConv(outChannels: p.outChannels, inChannels: p.inChannels, kernel: p.kernel, stride: p.stride,
                             padding: p.padding, weights: w, weightScales: s, bias: bias(b, inputScale: inputScale, weightScales: s))
    }

    public static func linear(_ p: LinearParameters, inputScale: Float, inputMeans: [Float]? = nil, integers: [Int8]? = nil) -> QuantizedLinear {
        precondition(integers.map { $0.count == p.weights.count } ?? true)
        let s = grid(p.weights, rows: p.outFeatures, bias: p.bias, inputScale: inputScale)
        let w = rounded(p.weights, rows: p.outFeatures, grid: s, integers: integers)
        let b = correctedBias(p.bias, weights: p.weights, quantized: w, scales: s, inputMeans: inputMeans, inChannels: p.inFeatures)
        return QuantizedLinear(outFeatures: p.outFeatures, inFeatures: p.inFeatures, weights: w, weightScales: s,
                               bias: bias(b, inputScale: inputScale, weightScales: s))
    }

    /// The whole network, given activation parameters for every name in `activationNames`, and optionally the
    /// per-channel means of every layer's input for bias correction (names as the float executor observes them).
    /// `wide`: parameters for every name in `QuantizedResNet18.wideActivationNames` (an int16 shortcut path),
    /// or empty (bytes throughout). `integers`: rounded weights by layer name ("stem", "layer1.0.conv1",
    /// "layer2.0.downsample", "fc"); layers not in it are rounded to nearest.
    public static func network(_ p: ResNet18Parameters, activations a: [String: QuantParams], wide: [String: WideQuantParams] = [:],
                               inputMeans m: [String: [Float]]? = nil, integers q: [String: [Int8]] = [:]) -> QuantizedResNet18 {
        let stem = conv(p.stem, inputScale: a["input"]!.scale, inputMeans: m?["input"], integers: q["stem"])
        var blocks: [QuantizedBlock] = []
        var previous = "stem"  // max pool keeps the stem's parameters
        var previousMeans = "maxpool"
        for (i, b) in p.blocks.enumerated() {
            let name = ResNet18Parameters.blockNames[i]
            let input = a[previous]!.scale
            blocks.append(QuantizedBlock(
                conv1: conv(b.conv1, inputScale: input, inputMeans: m?[previousMeans], integers: q["\(name).conv1"]),
                conv2: conv(b.conv2, inputScale: a["\(name).conv1"]!.scale, inputMeans: m?["\(name).conv1"], integers: q["\(name).conv2"]),
                downsample: b.downsample.map { conv($0, inputScale: input, inputMeans: m?[previousMeans], integers: q["\(name).downsample"]) }))
            previous = name
            previousMeans = name
        }
        let pooled = wide["pool"]?.scale ?? a["pool"]!.scale
        let head: QuantizedHead
        switch p.head {
        case .torchvision(let fc): head = .torchvision(fc: linear(fc, inputScale: pooled, inputMeans: m?["pool"], integers: q["fc"]))
        case .fastai(let fc1, let fc2): head = .fastai(fc1: fc1, fc2: fc2)
        }
        return QuantizedResNet18(stem: stem, blocks: blocks, head: head, activations: a, wideActivations: wide)
    }
}
