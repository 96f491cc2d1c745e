import Foundation
import ICHKernels
import ICHModel

/// The int8 executor: exact integer arithmetic per the contract in ICHKernels/Requantize.swift, so any
/// kernel that honours it gives the same bytes. Logits leave the last layer as float (one multiply each).
public struct Int8ResNet18: Sendable {
    /// The network; its convolution weights live only in `packed` and `winograd` (the int8 copies are dropped
    /// at load).
    let model: QuantizedResNet18
    /// Convolution weights packed once for the GEMM kernel (keyed by layer name): every convolution's, except,
    /// in an engine planned for one input size, those that run as Winograd at that size.
    let packed: [String: PackedConvWeights]
    /// Winograd F(2x2, 3x3) weights of the stride-1 3x3 convolutions small enough to afford them
    /// (`winogradLimit`); used when the input shape allows (`WinogradWeights.runs`), else `packed`.
    let winograd: [String: WinogradWeights]
    /// The input side the engine was planned for (nil: any).
    public let plannedInputSize: Int?
    /// Per convolution, the requantisation scale of each output channel: input scale x weight scale / output
    /// scale (fixed by the model, so computed once); `wideScales` the same for int16 outputs of the shortcut
    /// path (block outputs and downsamples of a model that has one).
    let requantScales: [String: [Float]]
    let wideScales: [String: [Float]]
    /// Layer names per block, built once (string interpolation in the run would allocate).
    let blockLayers: [(conv1: String, conv2: String, downsample: String, output: String)]
    /// How the kernels split their work over the pool (part numbers index per-part scratch).
    let parallel: Parallel
    /// The high pass's bias of a convolution over a 12-bit input (the bias goes into the low pass).
    let zeroBias: [Int32]

    /// Winograd's transformed weights take 16/9 x 2 bytes per weight, so only convolutions up to 256 x 256 x 3 x 3
    /// get them: layer1's four, layer2's three and layer3's three stride-1 convolutions in ResNet18 (2.4 million
    /// weights, 8.4 MB transformed); layer4's would need 24 MB more. Measured on the bundled model with a real
    /// slice, one thread (bench/README.md): layer1 and layer2 20.4 ms, with layer3 18.0 ms.
    public static let winogradLimit = 1 << 20
    /// The same limit for Winograd on arm64's GEMM tile (`WinogradWeights.lanes`, the Raspberry Pi 4 engine):
    /// layer4's three 3x3 convolutions too (2.36 million weights each; their 8 x 8 outputs run in blocks of 4 x 4
    /// tiles), 25 MB transformed in place of 7 MB of dot packing, +18 MB on a board with 1-8 GB, for 15.3 -> 10.5
    /// ms each in the Pi 4 estimate (bench/README.md, "ARM"). Only in an engine of one thread: layer4 is one band
    /// of tile rows, Winograd's unit of parallel work, so a split engine runs it direct (`WinogradWeights.takes`).
    public static let winogradLimitLanes = 1 << 22

    /// The most int32 accumulators one GEMM convolution holds at once (512 KiB): layer2's first convolution's
    /// full plane at 256 px; the stem's (4 MiB) is computed in bands of rows instead.
    public static let accumulatorBudget = 1 << 17
    /// The threads convolutions split their output tiles over; results are identical for every count.
    let pool: WorkerPool
    /// Accumulator and im2col buffers, kept from one run to the next (large fresh allocations come straight
    /// from mmap and fault in every page again).
    let workspace = Workspace()

    /// Buffers that grow to the largest layer seen and stay. One run uses them at a time (the lock).
    /// Activations live in slots. Bytes only: a block's input, its conv1 output, its shortcut and its output are
    /// the most ever alive at once (four slots). With the int16 shortcut path a block's input and output each
    /// have a byte and an int16 view, but the input's byte view dies before the output is written: the conv1
    /// output, the shortcut (int16), and the output's two views, plus the input's int16 view while a downsample
    /// runs, make five. Slot 0 holds the largest activation (the stem's output, alive only with the input and
    /// then the max pool's output); the others the largest of the rest (the input included), twice over for
    /// int16. After the first run of an input size an inference allocates nothing but its outputs (logits and
    /// the feature map for heatmaps).
    final class Workspace: @unchecked Sendable {
        static let slotCount = 5
        let lock = NSLock()
        private(set) var acc = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        private(set) var scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        private var accCapacity = 1, scratchCapacity = 1
        private(set) var slots: [UnsafeMutableRawPointer] = (0..<slotCount).map { _ in Workspace.allocateSlot(1) }
        private(set) var slotCapacities = [Int](repeating: 1, count: slotCount)

        static func allocateSlot(_ bytes: Int) -> UnsafeMutableRawPointer {
            .allocate(byteCount: bytes, alignment: 64)
        }

        /// Makes slot 0 hold `large` bytes and slots 1..<count `small`; only between runs (it frees what live
        /// tensors would point to).
        func reserveSlots(large: Int, small: Int, count: Int) {
            for i in 0..<count {
                let wanted = i == 0 ? large : small
                guard wanted > slotCapacities[i] else { continue }
                slots[i].deallocate()
                slots[i] = Self.allocateSlot(wanted)
                slotCapacities[i] = wanted
            }
        }

        /// The smallest slot that holds `count` elements of `T` and is not in `live` (a bit per slot), its
        /// memory bound to `T`.
        func slot<T>(_ count: Int, of _: T.Type, avoiding live: Int) -> (index: Int, data: UnsafeMutablePointer<T>) {
            let bytes = count * MemoryLayout<T>.stride
            var best = -1
            for i in slots.indices where slotCapacities[i] >= bytes && live & (1 << i) == 0 {
                if best < 0 || slotCapacities[i] < slotCapacities[best] { best = i }
            }
            guard best >= 0 else { preconditionFailure("no free activation slot of \(bytes) bytes (planned \(slotCapacities))") }
            return (best, slots[best].bindMemory(to: T.self, capacity: count))
        }

        /// A 12-bit input's byte planes and the high pass's accumulators (models with fine convolution inputs).
        private(set) var planes = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        private(set) var high = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        private var planesCapacity = 1, highCapacity = 1

        func reserveFine(planes bytes: Int, high count: Int) {
            Self.grow(&planes, &planesCapacity, to: bytes)
            Self.grow(&high, &highCapacity, to: count)
        }

        func reserve(acc count: Int, scratch bytes: Int) {
            Self.grow(&acc, &accCapacity, to: count)
            Self.grow(&scratch, &scratchCapacity, to: bytes)
        }

        /// Replaces `buffer` by one of `count` elements when it holds fewer (contents not kept).
        private static func grow<T>(_ buffer: inout UnsafeMutablePointer<T>, _ capacity: inout Int, to count: Int) {
            guard count > capacity else { return }
            buffer.deallocate()
            buffer = .allocate(capacity: count)
            capacity = count
        }

        deinit {
            acc.deallocate()
            scratch.deallocate()
            planes.deallocate()
            high.deallocate()
            for slot in slots { slot.deallocate() }
        }
    }

    public var threads: Int { pool.count }
    /// 8, or 12 for a model whose convolutions read 12-bit activations (two byte-kernel passes each).
    public var activationBits: Int { model.activationBits }
    public var kernel: ConvKernel { packed.values.first?.kind ?? .native }
    /// The convolutions that run as Winograd F(2x2, 3x3) when the input shape allows.
    public var winogradLayers: [String] { winograd.keys.sorted() }

    /// `kernel`: the convolution inner kernel (default: the one that suits this machine's instructions;
    /// every kernel gives the same bytes). `winograd`: whether the 3x3 stride-1 convolutions run as Winograd
    /// F(2x2, 3x3) where the shape allows (same bytes again; default `ConvWinograd.preferred(with: kernel)`: with
    /// the pairs kernel, and with the dot kernel on arm64 without `sdot`, the Raspberry Pi 4). `plannedInputSize`: the side of every input this engine will run
    /// (the model's); convolutions that run as Winograd at that size then keep no second packing (2.8 MiB less
    /// for ResNet18 at 256 px), and other sizes are refused. Without it, any size runs.
    ///
    /// The model is consumed: each convolution's int8 weights are released as soon as they are packed, so a
    /// uniquely held model (as `SliceScorer` passes it) never has its weights in memory twice over (load peak).
    public init(_ model: consuming QuantizedResNet18, threads: Int = 1, kernel: ConvKernel = .native, winograd: Bool? = nil,
                plannedInputSize: Int? = nil) {
        precondition(model.activationBits == 8 || model.hasWideShortcut, "12-bit activations need the int16 shortcut path")
        pool = WorkerPool(threads: threads)
        parallel = pool.kernelParallel
        zeroBias = [Int32](repeating: 0, count: ModelLayers.convs(model).map(\.1.outChannels).max() ?? 0)
        self.plannedInputSize = plannedInputSize
        let a = model.activations, wide = model.wideActivations
        var scales: [String: [Float]] = [:], wideScales: [String: [Float]] = [:]
        var names: [(conv1: String, conv2: String, downsample: String, output: String)] = []
        func scale(_ conv: QuantizedConv, _ name: String, from input: String, to output: String) {
            if let i = a[input], let o = a[output] { scales[name] = conv.weightScales.map { i.scale * $0 / o.scale } }
            if let i = a[input], let o = wide[output] { wideScales[name] = conv.weightScales.map { i.scale * $0 / o.scale } }
        }
        scale(model.stem, "stem", from: "input", to: "stem")
        for (i, block) in model.blocks.enumerated() {
            let n = ResNet18Parameters.blockNames[i], input = i == 0 ? "stem" : ResNet18Parameters.blockNames[i - 1]
            names.append((conv1: "\(n).conv1", conv2: "\(n).conv2", downsample: "\(n).downsample", output: n))
            scale(block.conv1, "\(n).conv1", from: input, to: "\(n).conv1")
            scale(block.conv2, "\(n).conv2", from: "\(n).conv1", to: n)
            if let down = block.downsample { scale(down, "\(n).downsample", from: input, to: "\(n).downsample") }
        }
        requantScales = scales
        self.wideScales = wideScales
        blockLayers = names
        let shapes = plannedInputSize.map { Self.convShapes(model, height: $0, width: $0) } ?? [:]
        var packed: [String: PackedConvWeights] = [:], transformed: [String: WinogradWeights] = [:]
        let useWinograd = winograd ?? ConvWinograd.preferred(with: kernel), lanes = ConvWinograd.prefersLanes
        let limit = lanes ? Self.winogradLimitLanes : Self.winogradLimit, parts = parallel.count
        func take(_ conv: inout QuantizedConv, _ name: String) {
            // Planned: Winograd weights only where the planned shape runs them (a 224 px model gets none).
            if useWinograd && conv.kernel == 3 && conv.stride == 1 && conv.padding == 1 && conv.weights.count <= limit
                && (shapes[name].map { WinogradWeights.takes($0, lanes: lanes, parts: parts) } ?? true) {
                transformed[name] = WinogradWeights(weights: conv.weights, outChannels: conv.outChannels, inChannels: conv.inChannels)
            }
            if transformed[name] == nil || shapes[name] == nil {
                packed[name] = PackedConvWeights(weights: conv.weights, outChannels: conv.outChannels, inChannels: conv.inChannels,
                                                 kernel: conv.kernel, kind: kernel)
            }
            conv.weights = []
        }
        take(&model.stem, "stem")
        for i in model.blocks.indices {
            let name = ResNet18Parameters.blockNames[i]
            take(&model.blocks[i].conv1, "\(name).conv1")
            take(&model.blocks[i].conv2, "\(name).conv2")
            if model.blocks[i].downsample != nil { take(&model.blocks[i].downsample!, "\(name).downsample") }
        }
        self.packed = packed
        self.winograd = transformed
        self.model = model
    }

    /// Every convolution's shape for an input `height` x `width`, walking the network as `run` does.
    static func convShapes(_ model: QuantizedResNet18, height: Int, width: Int) -> [String: ReferenceKernels.ConvShape] {
        var shapes: [String: ReferenceKernels.ConvShape] = [:]
        var (c, h, w) = (3, height, width)
        func add(_ name: String, _ conv: QuantizedConv) -> (Int, Int, Int) {
            let shape = ReferenceKernels.ConvShape(inChannels: c, inHeight: h, inWidth: w, outChannels: conv.outChannels,
                                                   kernel: conv.kernel, stride: conv.stride, padding: conv.padding)
            shapes[name] = shape
            return (shape.outChannels, shape.outHeight, shape.outWidth)
        }
        (c, h, w) = add("stem", model.stem)
        h = ConvGeometry.outputLength(h, kernel: 3, stride: 2, padding: 1)
        w = ConvGeometry.outputLength(w, kernel: 3, stride: 2, padding: 1)
        for (i, block) in model.blocks.enumerated() {
            let name = ResNet18Parameters.blockNames[i]
            if let down = block.downsample { _ = add("\(name).downsample", down) }
            (c, h, w) = add("\(name).conv1", block.conv1)
            (c, h, w) = add("\(name).conv2", block.conv2)
        }
        return shapes
    }

    public struct Output: Sendable {
        public var logits: [Float]
        /// layer4's output, dequantised: what class activation maps are made of.
        public var features: FeatureMap
        /// Per-channel statistics of the activations `run` was asked for (`statistics`), by name.
        public var channelStatistics: [String: ChannelStatistics] = [:]
    }

    /// A quantised tensor on its way through the network, held in workspace slots: as bytes or (a model with
    /// fine convolution inputs) 12-bit values, what convolutions read; as int16 of the shortcut path; or both (a
    /// block output of a model with that path).
    struct QTensor {
        var channels: Int, height: Int, width: Int
        var bytes: (slot: Int, data: UnsafeMutablePointer<UInt8>, q: QuantParams)?
        var fine: (slot: Int, data: UnsafeMutablePointer<UInt16>, q: QuantParams)?
        var wide: (slot: Int, data: UnsafeMutablePointer<Int16>, q: WideQuantParams)?

        var count: Int { channels * height * width }
        /// This tensor's slots as bits of a `live` mask.
        var bits: Int { (bytes.map { 1 << $0.slot } ?? 0) | (fine.map { 1 << $0.slot } ?? 0) | (wide.map { 1 << $0.slot } ?? 0) }
        /// The byte view, which every convolution and the max pool of a byte model read.
        var data: UnsafeMutablePointer<UInt8> { bytes!.data }
        /// The parameters of the view convolutions read (bytes or 12-bit).
        var q: QuantParams { bytes?.q ?? fine!.q }

        /// The values, from the int16 view when `preferWide` and it exists, else from the bytes.
        func dequantized(preferWide: Bool = false) -> FeatureMap {
            let values: [Float]
            if let wide, preferWide || (bytes == nil && fine == nil) {
                values = UnsafeBufferPointer(start: wide.data, count: count).map { wide.q.dequantize($0) }
            } else if let fine {
                values = UnsafeBufferPointer(start: fine.data, count: count).map { fine.q.dequantize(level: Int32($0)) }
            } else {
                let b = bytes!
                values = UnsafeBufferPointer(start: b.data, count: count).map { b.q.dequantize($0) }
            }
            return FeatureMap(channels: channels, height: height, width: width, values: values)
        }

        /// Per-channel mean and standard deviation, from the int16 view when there is one (as the pool reads),
        /// else the byte or 12-bit codes: integer sums over the plane, exact, then the affine map of the codes.
        func channelStatistics() -> ChannelStatistics {
            let plane = height * width
            var sums = [Double](repeating: 0, count: channels), squares = sums
            @inline(__always) func moments<T: FixedWidthInteger>(_ data: UnsafeMutablePointer<T>) {
                for c in 0..<channels {
                    let p = data + c * plane
                    // Squares of 8-, 12- and 16-bit codes fit 32 bits; their plane sums need 64.
                    var s: Int64 = 0, q: Int64 = 0
                    for i in 0..<plane {
                        let v = Int32(truncatingIfNeeded: p[i])
                        s &+= Int64(v)
                        q &+= Int64(v &* v)
                    }
                    sums[c] = Double(s)
                    squares[c] = Double(q)
                }
            }
            if let wide {
                moments(wide.data)
                return ChannelStatistics(sums: sums, squares: squares, count: plane, scale: wide.q.scale)
            } else if let fine {
                moments(fine.data)
                return ChannelStatistics(sums: sums, squares: squares, count: plane, scale: fine.q.scale, zero: Double(fine.q.zeroPoint))
            }
            moments(bytes!.data)
            return ChannelStatistics(sums: sums, squares: squares, count: plane, scale: bytes!.q.scale, zero: Double(bytes!.q.zeroPoint))
        }

        /// What a residual add reads: the int16 view when there is one.
        var residual: ReferenceKernels.ResidualInput {
            if let wide { return .wide(UnsafePointer(wide.data)) }
            if let fine { return .fine(UnsafePointer(fine.data), zero: fine.q.zeroPoint) }
            return .bytes(UnsafePointer(bytes!.data), zero: bytes!.q.zeroPoint)
        }

        /// The scale of the view that residual adds, pools and linear layers read (`residual`'s).
        var scale: Float { wide?.q.scale ?? q.scale }
    }

    /// A new tensor in free slots (none holding any of `live`), with a byte or 12-bit view (`q`, by its bits), an
    /// int16 view (`wide`) or both.
    func tensor(_ channels: Int, _ height: Int, _ width: Int, q: QuantParams?, wide: WideQuantParams? = nil,
                avoiding live: Int) -> QTensor {
        let count = channels * height * width
        var t = QTensor(channels: channels, height: height, width: width)
        var live = live
        if let q, q.bits > 8 {
            let (slot, data) = workspace.slot(count, of: UInt16.self, avoiding: live)
            t.fine = (slot, data, q)
            live |= 1 << slot
        } else if let q {
            let (slot, data) = workspace.slot(count, of: UInt8.self, avoiding: live)
            t.bytes = (slot, data, q)
            live |= 1 << slot
        }
        if let wide {
            let (slot, data) = workspace.slot(count, of: Int16.self, avoiding: live)
            t.wide = (slot, data, wide)
        }
        return t
    }

    /// Runs the network. `observe` sees dequantised activations; `profile` gets each layer's name, wall time and
    /// multiply-accumulates (for `ichd bench`); `statistics` names the activations ("stem", "maxpool", block
    /// outputs "layer1.0" ... "layer4.1") whose per-channel statistics the output carries.
    public func run(_ input: FeatureMap, observe: ActivationObserver? = nil, profile: LayerProfiler? = nil,
                    statistics: Set<String> = []) -> Output {
        if let side = plannedInputSize {
            precondition(input.height == side && input.width == side,
                         "engine planned for \(side) x \(side) inputs, given \(input.height) x \(input.width)")
        }
        workspace.lock.lock()
        defer { workspace.lock.unlock() }
        let a = model.activations
        let inQ = a["input"]!
        // ResNet18's largest activation is the stem's output (64 x H/2 x W/2); after the max pool none exceeds
        // 64 x H/4 x W/4 (each stage halves the side and doubles the channels at most), nor the input's.
        let half = ((input.height + 1) / 2, (input.width + 1) / 2), quarter = ((half.0 + 1) / 2, (half.1 + 1) / 2)
        let stemOut = model.stem.outChannels * half.0 * half.1
        let largestRest = max(input.values.count, model.stem.outChannels * quarter.0 * quarter.1)
        // (12-bit activations take two bytes, as int16 ones do.)
        let narrowBytes = model.activationBits > 8 ? 2 : 1
        workspace.reserveSlots(large: stemOut * narrowBytes, small: largestRest * (model.hasWideShortcut ? 2 : 1),
                               count: model.hasWideShortcut ? Workspace.slotCount : 4)
        let wide = model.wideActivations
        var x = tensor(input.channels, input.height, input.width, q: inQ, avoiding: 0)
        quantizeInput(input.values, x)
        observe?("input", x.dequantized())
        x = timed("stem", profile) { conv(x, model.stem, "stem", output: a["stem"]!, relu: true, live: x.bits) }
        observe?("stem", x.dequantized())
        var channelStatistics: [String: ChannelStatistics] = [:]
        if statistics.contains("stem") { channelStatistics["stem"] = x.channelStatistics() }
        x = timed("maxpool", profile) { maxPool(x) }
        observe?("maxpool", x.dequantized())
        if statistics.contains("maxpool") { channelStatistics["maxpool"] = x.channelStatistics() }
        for (i, block) in model.blocks.enumerated() {
            let names = blockLayers[i]
            let mid = timed(names.conv1, profile) { conv(x, block.conv1, names.conv1, output: a[names.conv1]!, relu: true, live: x.bits) }
            observe?(names.conv1, mid.dequantized())
            var shortcut = x
            if let down = block.downsample {
                shortcut = timed(names.downsample, profile) {
                    conv(x, down, names.downsample, output: a[names.downsample], wide: wide[names.downsample], relu: false,
                         live: x.bits | mid.bits)
                }
                observe?(names.downsample, shortcut.dequantized())
            }
            x = timed(names.conv2, profile) {
                conv(mid, block.conv2, names.conv2, output: a[names.output]!, wide: wide[names.output], relu: true, residual: shortcut,
                     live: mid.bits | shortcut.bits)
            }
            observe?(names.output, x.dequantized())
            if statistics.contains(names.output) { channelStatistics[names.output] = x.channelStatistics() }
        }
        // The int16 view (when there is one) is what the pool reads, so heatmaps show the same features.
        let features = x.dequantized(preferWide: true)
        let pooledQ = a["pool"], pooledWide = wide["pool"]
        let logits: [Float]
        switch model.head {
        case .torchvision(let fc):
            let pooled = timed("pool", profile) { pool(x, output: pooledQ, wide: pooledWide, withMax: false) }
            observe?("pool", pooled.dequantized())
            logits = timed("fc", profile) { linearLogits(pooled, fc) }
        case .fastai(let fc1, let fc2):
            // The head in float32 on the dequantised pooled features (QuantizedHead.fastai says why).
            let pooled = timed("pool", profile) { pool(x, output: pooledQ, wide: pooledWide, withMax: true) }.dequantized(preferWide: true)
            observe?("pool", pooled)
            let hidden = timed("head.fc1", profile) { FloatResNet18.linear(pooled.values, fc1, relu: true) }
            observe?("head.fc1", .vector(hidden))
            logits = timed("head.fc2", profile) { FloatResNet18.linear(hidden, fc2, relu: false) }
        }
        return Output(logits: logits, features: features, channelStatistics: channelStatistics)
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

    /// `live`: the slots (`QTensor.bits`) of tensors still needed after this layer, not reused for its output.
    /// The output has a byte (or 12-bit, by `output`'s bits) view when `output` is given and an int16 view when
    /// `wide` is. A 12-bit input runs the byte kernels twice, on its high and low planes (FineActivations).
    func conv(_ x: QTensor, _ layer: QuantizedConv, _ name: String, output: QuantParams?, wide: WideQuantParams? = nil, relu: Bool,
              residual: QTensor? = nil, live: Int) -> QTensor {
        let shape = ReferenceKernels.ConvShape(inChannels: x.channels, inHeight: x.height, inWidth: x.width,
                                               outChannels: layer.outChannels, kernel: layer.kernel, stride: layer.stride, padding: layer.padding)
        let plane = shape.outHeight * shape.outWidth
        // Every accumulator and output byte is written by the kernels: no zero fill.
        let transformed = winograd[name].flatMap { $0.runs(shape, parts: parallel.count) ? $0 : nil }
        let weights = packed[name]  // present for every convolution that does not run as Winograd here (`run` checks the size)
        // Accumulators of at most `accumulatorBudget` values: larger layers (the stem) run in bands of rows.
        // (Winograd keeps a band's per parallel part in its scratch.)
        let bandRows = max(1, min(shape.outHeight, Self.accumulatorBudget / max(1, layer.outChannels * shape.outWidth)))
        let bandAccumulators = layer.outChannels * bandRows * shape.outWidth
        workspace.reserve(acc: transformed != nil ? 0 : bandAccumulators,
                          scratch: transformed.map { $0.scratchBytes(shape, parts: parallel.count) }
                            ?? weights!.scratchBytes(shape, rows: bandRows, parts: parallel.count))
        // A 12-bit input: its two byte planes, and the high pass's accumulators (Winograd hands a band over at a
        // time, so they are kept for the whole plane; GEMM's are the band's, like `acc`).
        let split = x.fine.map { fine in
            workspace.reserveFine(planes: 2 * x.count, high: transformed != nil ? layer.outChannels * plane : bandAccumulators)
            FineActivations.split(fine.data, count: x.count, high: workspace.planes, low: workspace.planes + x.count)
            let zero = FineActivations.zeroPoints(fine.q.zeroPoint)
            return (high: UnsafePointer(workspace.planes), low: UnsafePointer(workspace.planes + x.count), zero: zero)
        }
        let acc = workspace.acc, scratch = workspace.scratch, high = workspace.high
        let out = tensor(layer.outChannels, shape.outHeight, shape.outWidth, q: output, wide: wide, avoiding: live | x.bits)
        // What the (last) pass reads: the low plane of a 12-bit input.
        let src = split?.low ?? UnsafePointer(x.data), zero = split?.zero.low ?? x.q.zeroPoint
        let byteScales = output == nil ? [] : requantScales[name]!, wideScales = wide == nil ? [] : self.wideScales[name]!
        // The residual's scale relative to each output's (0 without a residual).
        let residualScale = residual?.scale ?? 0
        byteScales.withUnsafeBufferPointer { sc in wideScales.withUnsafeBufferPointer { wsc in
            let bytes = out.bytes.map {
                ReferenceKernels.ByteTarget(data: $0.data, scales: sc.baseAddress!, clamp: OutputClamp(zero: $0.q.zeroPoint, relu: relu),
                                            residualScale: residualScale / $0.q.scale)
            }
            let fine = out.fine.map {
                ReferenceKernels.FineTarget(data: $0.data, scales: sc.baseAddress!,
                                            clamp: OutputClamp(zero: $0.q.zeroPoint, relu: relu, maximum: $0.q.maximum),
                                            residualScale: residualScale / $0.q.scale)
            }
            let wideTarget = out.wide.map {
                ReferenceKernels.WideTarget(data: $0.data, scales: wsc.baseAddress!, clamp: .wide(relu: relu),
                                            residualScale: residualScale / $0.q.scale)
            }
            let residualInput = residual?.residual
            layer.bias.withUnsafeBufferPointer { b in zeroBias.withUnsafeBufferPointer { noBias in
                // Each thread requantises the pixels whose accumulators it has just computed; the accumulators
                // of a band of rows start at output pixel `first` and hold `count` pixels per channel (the high
                // pass's: `highBand`).
                func requantize(_ pixels: Range<Int>, first: Int, count: Int, acc: UnsafePointer<Int32>,
                                highBand: (first: Int, count: Int)) {
                    ReferenceKernels.requantizePlanes(acc: acc, channels: layer.outChannels, plane: plane, residual: residualInput,
                                                      bytes: bytes, fine: fine, wide: wideTarget,
                                                      pixels: (first + pixels.lowerBound)..<(first + pixels.upperBound),
                                                      accBand: (first, count),
                                                      high: split == nil ? nil : (UnsafePointer(high), highBand.first, highBand.count))
                }
                if let transformed {
                    if let split {
                        ConvWinograd.convAccumulate(shape, input: split.high, inZero: split.zero.high, weights: transformed,
                                                    bias: noBias.baseAddress!, scratch: scratch, parallel: parallel,
                                                    finish: { pixels, bandAcc in
                                                        for o in 0..<layer.outChannels {
                                                            (high + o * plane + pixels.lowerBound).update(from: bandAcc + o * pixels.count,
                                                                                                          count: pixels.count)
                                                        }
                                                    })
                    }
                    ConvWinograd.convAccumulate(shape, input: src, inZero: zero, weights: transformed, bias: b.baseAddress!,
                                                scratch: scratch, parallel: parallel,
                                                finish: { pixels, bandAcc in
                                                    requantize(0..<pixels.count, first: pixels.lowerBound, count: pixels.count, acc: bandAcc,
                                                               highBand: (0, plane))
                                                })
                } else {
                    for top in stride(from: 0, to: shape.outHeight, by: bandRows) {
                        let band = top..<min(shape.outHeight, top + bandRows), first = top * shape.outWidth
                        let count = band.count * shape.outWidth
                        if let split {
                            ConvGEMM.convAccumulate(shape, rows: band, input: split.high, inZero: split.zero.high, weights: weights!,
                                                    bias: noBias.baseAddress!, acc: high, scratch: scratch, parallel: parallel)
                        }
                        ConvGEMM.convAccumulate(shape, rows: band, input: src, inZero: zero, weights: weights!,
                                                bias: b.baseAddress!, acc: acc, scratch: scratch, parallel: parallel,
                                                finish: { requantize($0, first: first, count: count, acc: acc, highBand: (first, count)) })
                    }
                }
            } }
        } }
        return out
    }

    /// The float input to its bytes or 12-bit values (`x`'s view), split over the pool.
    func quantizeInput(_ values: [Float], _ x: QTensor) {
        let q = x.q
        values.withUnsafeBufferPointer { src in
            let input = src.baseAddress!
            if let fine = x.fine {
                let base = fine.data
                pool.parallelFor(values.count) { range in
                    for i in range { base[i] = UInt16(q.level(input[i])) }
                }
            } else {
                let base = x.data
                pool.parallelFor(values.count) { range in
                    for i in range { base[i] = q.quantize(input[i]) }
                }
            }
        }
    }

    func maxPool(_ x: QTensor) -> QTensor {
        let oh = ConvGeometry.outputLength(x.height, kernel: 3, stride: 2, padding: 1)
        let ow = ConvGeometry.outputLength(x.width, kernel: 3, stride: 2, padding: 1)
        let out = tensor(x.channels, oh, ow, q: x.q, avoiding: x.bits)
        let plane = x.height * x.width
        if let input = x.fine?.data, let output = out.fine?.data {
            pool.parallelFor(x.channels) { channels in
                PoolKernels.maxPool3x3s2(input: input + channels.lowerBound * plane, channels: channels.count,
                                         height: x.height, width: x.width, output: output + channels.lowerBound * oh * ow)
            }
            return out
        }
        let input = x.data, output = out.data
        pool.parallelFor(x.channels) { channels in
            PoolKernels.maxPool3x3s2(input: input + channels.lowerBound * plane, channels: channels.count,
                                     height: x.height, width: x.width, output: output + channels.lowerBound * oh * ow)
        }
        return out
    }

    /// Global average pool (and, for the fastai head, global max pool first), requantised to `output` (bytes)
    /// or, with an int16 shortcut path, from `x`'s int16 view to `wide`.
    func pool(_ x: QTensor, output: QuantParams?, wide: WideQuantParams?, withMax: Bool) -> QTensor {
        let plane = x.height * x.width
        let out = tensor(withMax ? 2 * x.channels : x.channels, 1, 1, q: wide == nil ? output : nil, wide: wide, avoiding: x.bits)
        // Per-channel sums in the workspace (no allocation in a run); maxima on the stack.
        workspace.reserve(acc: x.channels, scratch: x.channels)
        let sums = workspace.acc
        if let source = x.wide, let target = out.wide {
            withUnsafeTemporaryAllocation(of: Int16.self, capacity: x.channels) { maxima in
                ReferenceKernels.channelSumsAndMaxima(input: source.data, channels: x.channels, plane: plane, sums: sums,
                                                      maxima: maxima.baseAddress!)
                let averageScale = source.q.scale / (Float(plane) * target.q.scale), maxScale = source.q.scale / target.q.scale
                var o = target.data
                if withMax {
                    for c in 0..<x.channels {
                        o.pointee = requantizeWide(Float(maxima[c]) * maxScale, relu: false)
                        o += 1
                    }
                }
                for c in 0..<x.channels {
                    o.pointee = requantizeWide(Float(sums[c]) * averageScale, relu: false)
                    o += 1
                }
            }
            return out
        }
        let maxima = workspace.scratch, q = x.q, output = out.q
        ReferenceKernels.channelSumsAndMaxima(input: x.data, channels: x.channels, plane: plane, zero: q.zeroPoint,
                                              sums: sums, maxima: maxima)
        let clamp = OutputClamp(zero: output.zeroPoint, relu: false)
        let averageScale = q.scale / (Float(plane) * output.scale)
        let maxScale = q.scale / output.scale
        var o = out.data
        if withMax {
            for c in 0..<x.channels {
                o.pointee = requantize(Int32(maxima[c]) - q.zeroPoint, scale: maxScale, zero: clamp.zero, lower: clamp.lower,
                                       upper: clamp.upper)
                o += 1
            }
        }
        for c in 0..<x.channels {
            o.pointee = requantize(sums[c], scale: averageScale, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
            o += 1
        }
        return out
    }

    /// The layer's accumulators, handed to `body`: Int32 sums for a byte input (widened), Int64 for an int16 one.
    func withAccumulators<R>(_ x: QTensor, _ layer: QuantizedLinear, _ body: (UnsafePointer<Int64>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: Int64.self, capacity: layer.outFeatures) { buffer in
            let acc = buffer.baseAddress!
            layer.weights.withUnsafeBufferPointer { w in
                layer.bias.withUnsafeBufferPointer { b in
                    if let wide = x.wide {
                        ReferenceKernels.linearAccumulate(input: wide.data, inFeatures: layer.inFeatures, weights: w.baseAddress!,
                                                          bias: b.baseAddress!, outFeatures: layer.outFeatures, acc: acc)
                    } else {
                        workspace.reserve(acc: layer.outFeatures, scratch: 0)
                        let narrow = workspace.acc
                        ReferenceKernels.linearAccumulate(input: x.data, inFeatures: layer.inFeatures, inZero: x.q.zeroPoint,
                                                          weights: w.baseAddress!, bias: b.baseAddress!, outFeatures: layer.outFeatures,
                                                          acc: narrow)
                        for o in 0..<layer.outFeatures { acc[o] = Int64(narrow[o]) }
                    }
                }
            }
            return body(acc)
        }
    }

    /// The last layer leaves the integer domain: logit = acc x inputScale x weightScale.
    func linearLogits(_ x: QTensor, _ layer: QuantizedLinear) -> [Float] {
        withAccumulators(x, layer) { acc in (0..<layer.outFeatures).map { Float(acc[$0]) * (x.scale * layer.weightScales[$0]) } }
    }
}
