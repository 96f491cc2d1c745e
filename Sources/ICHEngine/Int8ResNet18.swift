import Foundation
import ICHKernels
import ICHModel

/// The int8 executor: exact integer arithmetic per the contract in ICHKernels/Requantize.swift, so any
/// kernel that honours it gives the same bytes. Logits leave the last layer as float (one multiply each).
public struct Int8ResNet18: Sendable {
    /// The network; its convolution weights live only in `packed` (the int8 copies are dropped at load).
    let model: QuantizedResNet18
    /// Every convolution's weights, packed once for the GEMM kernel (keyed by layer name).
    let packed: [String: PackedConvWeights]
    /// The threads convolutions split their output tiles over; results are identical for every count.
    let pool: WorkerPool
    /// Accumulator and im2col buffers, kept from one run to the next (large fresh allocations come straight
    /// from mmap and fault in every page again).
    let workspace = Workspace()

    /// Buffers that grow to the largest layer seen and stay. One run uses them at a time (the lock).
    final class Workspace: @unchecked Sendable {
        let lock = NSLock()
        private(set) var acc = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        private(set) var scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        private var accCapacity = 1, scratchCapacity = 1

        func reserve(acc count: Int, scratch bytes: Int) {
            if count > accCapacity {
                acc.deallocate()
                acc = .allocate(capacity: count)
                accCapacity = count
            }
            if bytes > scratchCapacity {
                scratch.deallocate()
                scratch = .allocate(capacity: bytes)
                scratchCapacity = bytes
            }
        }

        deinit {
            acc.deallocate()
            scratch.deallocate()
        }
    }

    public var threads: Int { pool.count }

    public init(_ model: QuantizedResNet18, threads: Int = 1) {
        pool = WorkerPool(threads: threads)
        var packed: [String: PackedConvWeights] = [:]
        for (name, conv) in ModelLayers.convs(model) {
            packed[name] = PackedConvWeights(weights: conv.weights, outChannels: conv.outChannels, inChannels: conv.inChannels, kernel: conv.kernel)
        }
        self.packed = packed
        var lean = model
        lean.stem.weights = []
        for i in lean.blocks.indices {
            lean.blocks[i].conv1.weights = []
            lean.blocks[i].conv2.weights = []
            lean.blocks[i].downsample?.weights = []
        }
        self.model = lean
    }

    public struct Output: Sendable {
        public var logits: [Float]
        /// layer4's output, dequantised: what class activation maps are made of.
        public var features: FeatureMap
    }

    /// A quantised tensor on its way through the network.
    struct QTensor {
        var channels: Int, height: Int, width: Int
        var bytes: [UInt8]
        var q: QuantParams

        func dequantized() -> FeatureMap {
            FeatureMap(channels: channels, height: height, width: width, values: bytes.map { q.dequantize($0) })
        }
    }

    /// Runs the network. `observe` sees dequantised activations; `profile` gets each layer's name, wall time and
    /// multiply-accumulates (for `ichd bench`).
    public func run(_ input: FeatureMap, observe: ActivationObserver? = nil, profile: LayerProfiler? = nil) -> Output {
        workspace.lock.lock()
        defer { workspace.lock.unlock() }
        let a = model.activations
        let inQ = a["input"]!
        var x = QTensor(channels: input.channels, height: input.height, width: input.width,
                        bytes: quantizeInput(input.values, inQ), q: inQ)
        observe?("input", x.dequantized())
        x = timed("stem", profile) { conv(x, model.stem, "stem", output: a["stem"]!, relu: true) }
        observe?("stem", x.dequantized())
        x = timed("maxpool", profile) { maxPool(x) }
        observe?("maxpool", x.dequantized())
        for (i, block) in model.blocks.enumerated() {
            let name = ResNet18Parameters.blockNames[i]
            let mid = timed("\(name).conv1", profile) { conv(x, block.conv1, "\(name).conv1", output: a["\(name).conv1"]!, relu: true) }
            observe?("\(name).conv1", mid.dequantized())
            var shortcut = x
            if let down = block.downsample {
                shortcut = timed("\(name).downsample", profile) { conv(x, down, "\(name).downsample", output: a["\(name).downsample"]!, relu: false) }
                observe?("\(name).downsample", shortcut.dequantized())
            }
            x = timed("\(name).conv2", profile) { conv(mid, block.conv2, "\(name).conv2", output: a[name]!, relu: true, residual: shortcut) }
            observe?(name, x.dequantized())
        }
        let features = x.dequantized()
        let logits: [Float]
        switch model.head {
        case .torchvision(let fc):
            let pooled = timed("pool", profile) { pool(x, output: a["pool"]!, withMax: false) }
            observe?("pool", pooled.dequantized())
            logits = timed("fc", profile) { linearLogits(pooled, fc) }
        case .fastai(let fc1, let fc2):
            let pooled = timed("pool", profile) { pool(x, output: a["pool"]!, withMax: true) }
            observe?("pool", pooled.dequantized())
            let hidden = timed("head.fc1", profile) { linear(pooled, fc1, output: a["head.fc1"]!) }
            observe?("head.fc1", hidden.dequantized())
            logits = timed("head.fc2", profile) { linearLogits(hidden, fc2) }
        }
        return Output(logits: logits, features: features)
    }

    /// Times `body` when profiling; the MACs come from the tensor it returns and the layer's shape.
    @inline(__always)
    func timed(_ name: String, _ profile: LayerProfiler?, _ body: () -> QTensor) -> QTensor {
        guard let profile else { return body() }
        let start = ContinuousClock.now
        let out = body()
        profile(name, ContinuousClock.now - start, macs(name, out))
        return out
    }

    @inline(__always)
    func timed(_ name: String, _ profile: LayerProfiler?, _ body: () -> [Float]) -> [Float] {
        guard let profile else { return body() }
        let start = ContinuousClock.now
        let out = body()
        profile(name, ContinuousClock.now - start, macs(name, nil))
        return out
    }

    /// Multiply-accumulates of a layer given its output.
    func macs(_ name: String, _ out: QTensor?) -> Int {
        let layers = Dictionary(uniqueKeysWithValues: ModelLayers.convs(model).map { ($0.0, $0.1) })
        if let conv = layers[name], let out {
            return out.height * out.width * conv.outChannels * conv.inChannels * conv.kernel * conv.kernel
        }
        switch (name, model.head) {
        case ("fc", .torchvision(let fc)): return fc.inFeatures * fc.outFeatures
        case ("head.fc1", .fastai(let fc1, _)): return fc1.inFeatures * fc1.outFeatures
        case ("head.fc2", .fastai(_, let fc2)): return fc2.inFeatures * fc2.outFeatures
        default: return 0
        }
    }

    func conv(_ x: QTensor, _ layer: QuantizedConv, _ name: String, output: QuantParams, relu: Bool, residual: QTensor? = nil) -> QTensor {
        let shape = ReferenceKernels.ConvShape(inChannels: x.channels, inHeight: x.height, inWidth: x.width,
                                               outChannels: layer.outChannels, kernel: layer.kernel, stride: layer.stride, padding: layer.padding)
        let plane = shape.outHeight * shape.outWidth
        // Every accumulator and output byte is written by the kernels: no zero fill.
        workspace.reserve(acc: layer.outChannels * plane, scratch: ConvGEMM.scratchBytes(shape))
        let acc = workspace.acc, scratch = workspace.scratch
        let scales = layer.weightScales.map { x.q.scale * $0 / output.scale }
        let clamp = OutputClamp(zero: output.zeroPoint, relu: relu)
        let out = [UInt8](unsafeUninitializedCapacity: layer.outChannels * plane) { o, count in
            let outBase = o.baseAddress!
            x.bytes.withUnsafeBufferPointer { src in
                layer.bias.withUnsafeBufferPointer { b in
                    scales.withUnsafeBufferPointer { sc in
                        let scaleBase = sc.baseAddress!
                        func run(_ r: UnsafePointer<UInt8>?) {
                            // Each thread requantises the pixels whose accumulators it has just computed.
                            ConvGEMM.convAccumulate(shape, input: src.baseAddress!, inZero: x.q.zeroPoint, weights: packed[name]!,
                                                    bias: b.baseAddress!, acc: acc, scratch: scratch,
                                                    parallel: { pool.parallelFor($0, $1) },
                                                    finish: { pixels in
                                ReferenceKernels.requantizePlanes(acc: acc, channels: layer.outChannels, plane: plane, scales: scaleBase,
                                                                  clamp: clamp, residual: r, residualZero: residual?.q.zeroPoint ?? 0,
                                                                  residualScale: residual.map { $0.q.scale / output.scale } ?? 0,
                                                                  output: outBase, pixels: pixels)
                            })
                        }
                        if let residual {
                            residual.bytes.withUnsafeBufferPointer { run($0.baseAddress!) }
                        } else {
                            run(nil)
                        }
                    }
                }
            }
            count = layer.outChannels * plane
        }
        return QTensor(channels: layer.outChannels, height: shape.outHeight, width: shape.outWidth, bytes: out, q: output)
    }

    /// The float input to bytes, split over the pool.
    func quantizeInput(_ values: [Float], _ q: QuantParams) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: values.count) { out, count in
            values.withUnsafeBufferPointer { src in
                let base = out.baseAddress!, input = src.baseAddress!
                pool.parallelFor(values.count) { range in
                    for i in range { base[i] = q.quantize(input[i]) }
                }
            }
            count = values.count
        }
    }

    func maxPool(_ x: QTensor) -> QTensor {
        let oh = ConvGeometry.outputLength(x.height, kernel: 3, stride: 2, padding: 1)
        let ow = ConvGeometry.outputLength(x.width, kernel: 3, stride: 2, padding: 1)
        var out = [UInt8](repeating: 0, count: x.channels * oh * ow)
        x.bytes.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let input = src.baseAddress!, output = dst.baseAddress!
                pool.parallelFor(x.channels) { channels in
                    PoolKernels.maxPool3x3s2(input: input + channels.lowerBound * x.height * x.width, channels: channels.count,
                                             height: x.height, width: x.width, output: output + channels.lowerBound * oh * ow)
                }
            }
        }
        return QTensor(channels: x.channels, height: oh, width: ow, bytes: out, q: x.q)
    }

    /// Global average pool (and, for the fastai head, global max pool first), requantised to `output`.
    func pool(_ x: QTensor, output: QuantParams, withMax: Bool) -> QTensor {
        let plane = x.height * x.width
        var sums = [Int32](repeating: 0, count: x.channels)
        var maxima = [UInt8](repeating: 0, count: x.channels)
        x.bytes.withUnsafeBufferPointer { src in
            ReferenceKernels.channelSumsAndMaxima(input: src.baseAddress!, channels: x.channels, plane: plane, zero: x.q.zeroPoint,
                                                  sums: &sums, maxima: &maxima)
        }
        let clamp = OutputClamp(zero: output.zeroPoint, relu: false)
        let averageScale = x.q.scale / (Float(plane) * output.scale)
        let maxScale = x.q.scale / output.scale
        var out: [UInt8] = []
        if withMax {
            out += maxima.map { requantize(Int32($0) - x.q.zeroPoint, scale: maxScale, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper) }
        }
        out += sums.map { requantize($0, scale: averageScale, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper) }
        return QTensor(channels: out.count, height: 1, width: 1, bytes: out, q: output)
    }

    func accumulate(_ x: QTensor, _ layer: QuantizedLinear) -> [Int32] {
        var acc = [Int32](repeating: 0, count: layer.outFeatures)
        x.bytes.withUnsafeBufferPointer { src in
            layer.weights.withUnsafeBufferPointer { w in
                layer.bias.withUnsafeBufferPointer { b in
                    ReferenceKernels.linearAccumulate(input: src.baseAddress!, inFeatures: layer.inFeatures, inZero: x.q.zeroPoint,
                                                      weights: w.baseAddress!, bias: b.baseAddress!, outFeatures: layer.outFeatures, acc: &acc)
                }
            }
        }
        return acc
    }

    func linear(_ x: QTensor, _ layer: QuantizedLinear, output: QuantParams) -> QTensor {
        let acc = accumulate(x, layer)
        let clamp = OutputClamp(zero: output.zeroPoint, relu: true)
        let out = (0..<layer.outFeatures).map {
            requantize(acc[$0], scale: x.q.scale * layer.weightScales[$0] / output.scale, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
        }
        return QTensor(channels: layer.outFeatures, height: 1, width: 1, bytes: out, q: output)
    }

    /// The last layer leaves the integer domain: logit = acc x inputScale x weightScale.
    func linearLogits(_ x: QTensor, _ layer: QuantizedLinear) -> [Float] {
        let acc = accumulate(x, layer)
        return (0..<layer.outFeatures).map { Float(acc[$0]) * (x.q.scale * layer.weightScales[$0]) }
    }
}
