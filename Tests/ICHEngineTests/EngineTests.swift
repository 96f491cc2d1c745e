import Foundation
import ICHConverter
import ICHEngine
import ICHKernels
@testable import ICHModel
import ICHPhantom
import ICHPreprocessing
import ICHTestSupport
import Testing

@Suite struct FloatExecutorTests {
    @Test func convolutionMatchesNaive() {
        var rng = SeededGenerator(seed: 5)
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (7, 2, 3), (1, 2, 0)] {
            let x = FeatureMap(channels: 3, height: 9, width: 7, values: (0..<189).map { _ in Float(rng.gaussian()) })
            let w = (0..<(4 * 3 * k * k)).map { _ in Float(rng.gaussian()) }
            let params = ConvParameters(outChannels: 4, inChannels: 3, kernel: k, stride: s, padding: p, weights: w, bias: [0.1, -0.2, 0.3, 0])
            let y = FloatResNet18.conv(x, params, relu: false)
            for o in 0..<4 {
                for oy in 0..<y.height {
                    for ox in 0..<y.width {
                        var e = Double(params.bias[o])
                        for i in 0..<3 {
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let iy = oy * s + ky - p, ix = ox * s + kx - p
                                    guard iy >= 0, iy < 9, ix >= 0, ix < 7 else { continue }
                                    e += Double(w[((o * 3 + i) * k + ky) * k + kx]) * Double(x.values[(i * 9 + iy) * 7 + ix])
                                }
                            }
                        }
                        #expect(abs(Double(y.values[(o * y.height + oy) * y.width + ox]) - e) < 1e-4)
                    }
                }
            }
        }
    }
}

/// Shared fixtures: random ResNet18s (both heads) quantised with calibration on small random-phantom inputs.
enum Networks {
    static func parameters(_ layout: WeightLayout, classes: Int, seed: UInt64) throws -> ResNet18Parameters {
        try ResNet18Layout.load(Safetensors.File(tensors: RandomResNet18.stateDict(layout: layout, numClasses: classes, seed: seed)))
    }

    /// Inputs at 64x64: phantom slices through the real preprocessing.
    static let inputs: [FeatureMap] = {
        var spec = Preprocessing.rsna
        spec.outputSize = 64
        let pre = SlicePreprocessor(spec)
        return (0..<3).flatMap { s in
            PhantomSeries(seed: 500 + UInt64(s), positive: s == 0, size: 128).slices().filter {
                if case .score = pre.assess($0.image) { return true } else { return false }
            }.prefix(4).map { slice in
                let m = pre.prepare(slice.image)
                return FeatureMap(channels: 3, height: 64, width: 64, values: m.tensor)
            }
        }
    }()

    /// `wide`: with the int16 shortcut path (as `ichd convert` writes by default); `bits`: the width of the
    /// activations convolutions read (12 needs `wide`).
    static func quantized(_ p: ResNet18Parameters, wide: Bool = false, bits: Int = 8) -> QuantizedResNet18 {
        let float = FloatResNet18(p)
        var stats = ActivationStatistics(expectedObservations: inputs.count)
        for x in inputs { _ = float.run(x) { stats.observe($0, $1) } }
        let names = QuantizedResNet18.activationNames(wideShortcut: wide)
        return WeightQuantizer.network(p, activations: stats.parameters(.minMax, names: names, bits: bits),
                                       wide: wide ? stats.wideParameters(names: QuantizedResNet18.wideActivationNames) : [:],
                                       inputMeans: stats.channelMeans)
    }
}

@Suite struct Int8ExecutorTests {
    @Test(arguments: [WeightLayout.torchvision, .fastai], [false, true])
    func int8StaysCloseToFloat(_ layout: WeightLayout, wide: Bool) throws {
        let p = try Networks.parameters(layout, classes: 6, seed: 11)
        let q = Networks.quantized(p, wide: wide)
        let float = FloatResNet18(p), int8 = Int8ResNet18(q)
        var worst: Float = 0
        for x in Networks.inputs {
            let pf = float.run(x).logits.map(sigmoid), pq = int8.run(x).logits.map(sigmoid)
            worst = max(worst, zip(pf, pq).map { abs($0 - $1) }.max()!)
        }
        #expect(worst < 0.05, "max |p_int8 - p_float| = \(worst)")
    }

    /// The int16 shortcut path carries the residual stream 16-32 times finer than bytes: on every random
    /// network and head the int8 logits stay closer to float with it than without (measured on these four:
    /// the summed |logit difference| 9-25% lower; on the trained bundled model the gain is larger, see
    /// docs/converting.md).
    @Test(arguments: [(WeightLayout.torchvision, UInt64(11)), (.fastai, 11), (.torchvision, 31), (.fastai, 77)])
    func wideShortcutTracksFloatMoreClosely(_ layout: WeightLayout, seed: UInt64) throws {
        let p = try Networks.parameters(layout, classes: 6, seed: seed)
        let (byteError, wideError) = Self.summedLogitErrors(p, Networks.quantized(p), Networks.quantized(p, wide: true))
        #expect(wideError < 0.95 * byteError, "summed |logit difference| with int16 shortcut \(wideError), bytes \(byteError)")
    }

    /// Summed |logit difference| from float of two int8 versions of `p` over the shared inputs.
    static func summedLogitErrors(_ p: ResNet18Parameters, _ a: QuantizedResNet18, _ b: QuantizedResNet18) -> (Double, Double) {
        let float = FloatResNet18(p), first = Int8ResNet18(a), second = Int8ResNet18(b)
        var errors = (0.0, 0.0)
        for x in Networks.inputs {
            let f = float.run(x).logits
            errors.0 += zip(first.run(x).logits, f).map { Double(abs($0 - $1)) }.reduce(0, +)
            errors.1 += zip(second.run(x).logits, f).map { Double(abs($0 - $1)) }.reduce(0, +)
        }
        return errors
    }

    /// 12-bit convolution inputs (a 16 times finer step) bring the int8 logits closer to float on every random
    /// network and head (measured on these four, weights rounded to nearest: the summed |logit difference| 14-34%
    /// lower; the weights' own rounding is then most of what is left, which GPTQ takes down: docs/converting.md).
    @Test(arguments: [(WeightLayout.torchvision, UInt64(11)), (.fastai, 11), (.torchvision, 31), (.fastai, 77)])
    func fineActivationsTrackFloatMoreClosely(_ layout: WeightLayout, seed: UInt64) throws {
        let p = try Networks.parameters(layout, classes: 6, seed: seed)
        let (byteError, fineError) = Self.summedLogitErrors(p, Networks.quantized(p, wide: true), Networks.quantized(p, wide: true, bits: 12))
        #expect(fineError < 0.9 * byteError, "summed |logit difference| with 12-bit activations \(fineError), bytes \(byteError)")
    }

    /// Threads split output tiles and channels, and the two convolution kernels (x86's int16 pairs, ARM's dot
    /// products) differ in every loop: every thread count and kernel must give the same bits, with and without
    /// the int16 shortcut path, with bytes or 12-bit activations.
    @Test(arguments: [(false, 8), (true, 8), (true, 12)])
    func resultsAreIdenticalForEveryThreadCountAndKernel(wide: Bool, bits: Int) throws {
        let p = try Networks.parameters(.fastai, classes: 3, seed: 16)
        let q = Networks.quantized(p, wide: wide, bits: bits)
        let reference = Int8ResNet18(q, threads: 1, kernel: .pairs)
        for (threads, kernel) in [(2, ConvKernel.pairs), (3, .pairs), (5, .pairs), (1, .dot), (3, .dot)] {
            let other = Int8ResNet18(q, threads: threads, kernel: kernel)
            #expect(other.kernel == kernel)
            for x in Networks.inputs.prefix(3) {
                let a = reference.run(x), b = other.run(x)
                #expect(a.logits == b.logits, "\(threads) threads, \(kernel) kernel")
                #expect(a.features == b.features, "\(threads) threads, \(kernel) kernel")
            }
        }
    }

    /// With arm64's GEMM tile (`WinogradWeights.lanes`) layer4's 8 x 8 convolutions too (blocks of 4 x 4 tiles).
    static let winogradLayers = ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
                                 "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2",
                                 "layer3.0.conv2", "layer3.1.conv1", "layer3.1.conv2"]
        + (ConvWinograd.prefersLanes ? ["layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"] : [])

    /// At 256 px layer1 runs 64 x 64, layer2 32 x 32 and layer3 16 x 16, where the x86 engine (pairs kernel) and
    /// the Raspberry Pi 4 engine (dot kernel without `sdot`) take Winograd F(2x2, 3x3) (and the stem runs in
    /// bands of rows); the Pi 5's and x86's dot-product engine does not. Every combination, and Winograd's GEMM on
    /// either tile (arm64's smlal lanes, x86's vpmaddwd pairs), gives the same bits.
    @Test(arguments: [(false, 8), (true, 8), (true, 12)])
    func winogradLayersGiveTheSameBits(wide: Bool, bits: Int) throws {
        let p = try Networks.parameters(.torchvision, classes: 6, seed: 18)
        let q = Networks.quantized(p, wide: wide, bits: bits)
        let pairs = Int8ResNet18(q, threads: 2, kernel: .pairs), dot = Int8ResNet18(q, kernel: .dot, winograd: false)
        let dotWinograd = Int8ResNet18(q, threads: 2, kernel: .dot, winograd: true)
        #expect(pairs.winogradLayers == Self.winogradLayers)
        #expect(dot.winogradLayers.isEmpty)
        #expect(dotWinograd.winogradLayers == Self.winogradLayers)
        var spec = Preprocessing.rsna
        spec.outputSize = 256
        let slice = PhantomSeries(seed: 510, positive: true, size: 256).slices()[12].image
        let x = FeatureMap(SlicePreprocessor(spec).prepare(slice))
        let a = pairs.run(x), b = dot.run(x), d = dotWinograd.run(x)
        #expect(a.logits == b.logits)
        #expect(a.features == b.features)
        #expect(d.logits == a.logits)
        #expect(d.features == a.features)
        // Planned for 256 px (as SliceScorer plans it), the Winograd layers keep no direct packing: same bits.
        let planned = Int8ResNet18(q, threads: 2, kernel: .pairs, plannedInputSize: 256)
        let c = planned.run(x)
        #expect(c.logits == a.logits)
        #expect(c.features == a.features)
    }

    /// Which engines take Winograd by default: the pairs kernel (x86) always; the dot kernel only where it
    /// multiplies in int16 products (arm64 without `sdot`: the Raspberry Pi 4 build), never with `sdot` (Pi 5) or
    /// on x86 (where the dot kernel is only the ARM kernel under test). `winograd:` overrides either way.
    @Test func winogradSelection() throws {
        #expect(ConvWinograd.preferred(with: .pairs))
        #expect(ConvWinograd.preferred(with: .dot) == ConvDot.prefersInt16Products)
        #if arch(arm64)
        #expect(WinogradWeights(weights: [Int8](repeating: 1, count: 9), outChannels: 1, inChannels: 1).lanes)
        #else
        #expect(!ConvWinograd.preferred(with: .dot))
        #expect(!WinogradWeights(weights: [Int8](repeating: 1, count: 9), outChannels: 1, inChannels: 1).lanes)
        #endif
        let q = Networks.quantized(try Networks.parameters(.torchvision, classes: 2, seed: 20), wide: false, bits: 8)
        #expect(Int8ResNet18(q, kernel: .pairs).winogradLayers == Self.winogradLayers)
        #expect(Int8ResNet18(q, kernel: .dot).winogradLayers == (ConvDot.prefersInt16Products ? Self.winogradLayers : []))
        #expect(Int8ResNet18(q, kernel: .dot, winograd: true).winogradLayers == Self.winogradLayers)
        #expect(Int8ResNet18(q, kernel: .pairs, winograd: false).winogradLayers.isEmpty)
        // Planned for 224 px, no layer fits Winograd's blocks (56, 28 and 14 wide): none is transformed.
        #expect(Int8ResNet18(q, kernel: .dot, winograd: true, plannedInputSize: 224).winogradLayers.isEmpty)
    }

    /// A convolution over 12-bit activations is the exact Int64 sum of the contract, however the engine splits it
    /// (high and low byte planes, bias in one pass, Winograd's high pass kept for the whole plane): the stem (GEMM
    /// in bands of rows at 256 px) and layer1.0.conv1 (Winograd on x86's pairs kernel, GEMM on the dot kernel),
    /// recomputed here directly from their observed 12-bit inputs, give the observed 12-bit outputs.
    @Test(arguments: [ConvKernel.pairs, .dot])
    func fineConvolutionsAreTheDirectSum(kernel: ConvKernel) throws {
        let p = try Networks.parameters(.torchvision, classes: 2, seed: 19)
        let q = Networks.quantized(p, wide: true, bits: 12)
        let engine = Int8ResNet18(q, threads: 2, kernel: kernel)
        var spec = Preprocessing.rsna
        spec.outputSize = 256
        let slice = PhantomSeries(seed: 511, positive: true, size: 256).slices()[12].image
        var seen: [String: FeatureMap] = [:]
        _ = engine.run(FeatureMap(SlicePreprocessor(spec).prepare(slice))) { seen[$0] = $1 }
        func levels(_ name: String, _ param: String) -> [Int64] {
            let qp = q.activations[param]!
            return seen[name]!.values.map { Int64((($0 / qp.scale).rounded() + Float(qp.zeroPoint))) }
        }
        func check(_ conv: QuantizedConv, input: String, inputParams: String, output: String) {
            let x = levels(input, inputParams), y = levels(output, output)
            let inQ = q.activations[inputParams]!, outQ = q.activations[output]!
            #expect(x.allSatisfy { (0...4095).contains($0) } && x.contains { $0 > 255 })
            let map = seen[input]!, out = seen[output]!
            let k = conv.kernel
            var mismatches = 0, clamped = 0
            for o in 0..<conv.outChannels {
                let scale = inQ.scale * conv.weightScales[o] / outQ.scale
                for oy in 0..<out.height {
                    for ox in 0..<out.width {
                        var acc = Int64(conv.bias[o])
                        for i in 0..<conv.inChannels {
                            for ky in 0..<k {
                                let iy = oy * conv.stride + ky - conv.padding
                                guard iy >= 0 && iy < map.height else { continue }
                                for kx in 0..<k {
                                    let ix = ox * conv.stride + kx - conv.padding
                                    guard ix >= 0 && ix < map.width else { continue }
                                    acc += (x[(i * map.height + iy) * map.width + ix] - Int64(inQ.zeroPoint))
                                        * Int64(conv.weights[((o * conv.inChannels + i) * k + ky) * k + kx])
                                }
                            }
                        }
                        let v = Float(acc) * scale  // ReLU after both layers
                        let level = Int64(min(max(v, 0), Float(4095 - outQ.zeroPoint)).rounded(.toNearestOrEven)) + Int64(outQ.zeroPoint)
                        if level == 4095 { clamped += 1 }
                        if level != y[(o * out.height + oy) * out.width + ox] { mismatches += 1 }
                    }
                }
            }
            #expect(mismatches == 0, "\(output): \(mismatches) outputs differ from the direct sum")
            #expect(clamped < out.values.count / 100)
        }
        check(q.stem, input: "input", inputParams: "input", output: "stem")
        check(q.blocks[0].conv1, input: "maxpool", inputParams: "stem", output: "layer1.0.conv1")
    }

    /// An engine planned for one input size refuses another (a programming error: the scorer always feeds the
    /// model's size) instead of running without the weights it dropped.
    @Test func plannedEngineRefusesAnotherSize() async throws {
        await #expect(processExitsWith: .failure) {
            let q = Networks.quantized(try Networks.parameters(.torchvision, classes: 2, seed: 3))
            let engine = Int8ResNet18(q, kernel: .pairs, plannedInputSize: 256)
            _ = engine.run(FeatureMap(channels: 3, height: 128, width: 128, values: [Float](repeating: 0, count: 3 * 128 * 128)))
        }
    }

    @Test func int8IsDeterministicAndDiffersFromAnUncalibratedModel() throws {
        let p = try Networks.parameters(.torchvision, classes: 2, seed: 12)
        let q = Networks.quantized(p)
        let x = Networks.inputs[0]
        #expect(Int8ResNet18(q).run(x).logits == Int8ResNet18(q).run(x).logits)
        // A model with absurd activation ranges must do worse: the test can fail.
        var bad = q
        for k in bad.activations.keys { bad.activations[k] = QuantParams(scale: 1, zeroPoint: 0) }
        let pf = FloatResNet18(p).run(x).logits
        let good = zip(Int8ResNet18(q).run(x).logits, pf).map { abs($0 - $1) }.max()!
        let worse = zip(Int8ResNet18(bad).run(x).logits, pf).map { abs($0 - $1) }.max()!
        #expect(good < worse)
    }
}

@Suite struct ModelFileTests {
    static func model(wide: Bool = false, bits: Int = 8) throws -> ModelFile {
        let p = try Networks.parameters(.fastai, classes: 2, seed: 13)
        let q = Networks.quantized(p, wide: wide, bits: bits)
        let meta = ModelMetadata(head: .fastai, classNames: ["any", "other"], preprocessing: .rsna, thresholds: [0.5, 0.3],
                                 quantization: QuantizationInfo(scheme: "test", requantization: "test", activations: q.activations,
                                                                wideActivations: wide ? q.wideActivations : nil),
                                 calibration: CalibrationSummary(method: "min-max", methodErrors: [:], samples: 1, heldOutSamples: 0,
                                                                 source: "test", synthetic: true),
                                 sourceSHA256: "00", converterVersion: "test", created: "2026-11-26T00:00:00Z", modelCard: "test")
        return ModelFile(metadata: meta, network: q)
    }

    /// Why `ModelFile.decode` refuses `d` (nil: it loads).
    static func reason(_ d: Data) -> String? {
        do {
            _ = try ModelFile.decode(d)
            return nil
        } catch {
            return error.description
        }
    }

    /// Bytes-only models are written as format version 1 (readable by every ichd), models with the int16
    /// shortcut path as version 2, those with 12-bit activations as version 3.
    @Test(arguments: [(false, 8), (true, 8), (true, 12)])
    func roundTripAndAlignment(wide: Bool, bits: Int) throws {
        let m = try Self.model(wide: wide, bits: bits)
        let data = try m.encode()
        #expect(data[8] == (bits == 12 ? 3 : wide ? 2 : 1))
        #expect(try ModelFile.decode(data).network.activationBits == bits)
        let back = try ModelFile.decode(data)
        #expect(back.network == m.network)
        #expect(back.network.hasWideShortcut == wide)
        #expect(back.metadata.classNames == ["any", "other"] && back.metadata.thresholds == [0.5, 0.3])
        #expect(back.metadata.tensors.allSatisfy { $0.offset % 64 == 0 })
        #expect(try m.encode() == data, "encoding is deterministic")
    }

    @Test func damagedFilesAreRefusedWithReasons() throws {
        let data = try Self.model().encode()
        #expect(Self.reason(data.prefix(data.count - 100))?.contains("truncated") == true)
        var flipped = data
        flipped[data.count / 2] ^= 0x40
        #expect(Self.reason(flipped)?.contains("SHA-256") == true)
        var version = data
        version[8] = 9
        #expect(Self.reason(version)?.contains("version 9") == true)
        #expect(Self.reason(Data("hello".utf8))?.contains("not an ichd model") == true)
        var other = try Self.model()
        other.metadata.architecture = "resnet50"
        #expect(Self.reason(try other.encode())?.contains("architecture resnet50") == true)
        other = try Self.model()
        other.metadata.thresholds = [0.5]
        #expect(Self.reason(try other.encode())?.contains("thresholds") == true)
    }

    /// The fastai head is stored and run in float32 (BatchNorm1d folded), with no activation parameters of its
    /// own; non-finite head weights are refused like any damaged tensor.
    @Test func fastaiHeadIsStoredAsFloat32() throws {
        let m = try Self.model(wide: true)
        let data = try m.encode()
        let tensors = Dictionary(uniqueKeysWithValues: try ModelFile.decode(data).metadata.tensors.map { ($0.name, $0) })
        #expect(tensors["head.fc1.weight"]?.dtype == "f32" && tensors["head.fc1.weight"]?.shape == [512, 1024])
        #expect(tensors["head.fc2.bias"]?.dtype == "f32" && tensors["head.fc2.bias"]?.shape == [2])
        #expect(tensors["head.fc1.weight_scale"] == nil && m.network.activations["head.fc1"] == nil)
        guard case .fastai(var fc1, let fc2) = m.network.head else { Issue.record("not a fastai head"); return }
        #expect(try ModelFile.decode(data).network.head == m.network.head)
        fc1.weights[7] = .nan
        var damaged = m
        damaged.network.head = .fastai(fc1: fc1, fc2: fc2)
        #expect(Self.reason(try damaged.encode())?.contains("head.fc1: NaN") == true)

        // A file from a converter that stored the fastai head as int8 (a head.fc1.weight_scale tensor) is refused
        // with a request to convert again, not run with a head it no longer has.
        let length = Int(data[16..<24].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let json = data[64..<(64 + length)].prefix { $0 != 0 }
        let old = String(decoding: json, as: UTF8.self).replacingOccurrences(of: "\"head.fc2.bias\"", with: "\"head.fc1.weight_scale\"")
        let oldFile = ModelFile.assemble(version: 2, metadataJSON: Data(old.utf8), tensorSection: data[(64 + length)...])
        #expect(Self.reason(oldFile)?.contains("int8 fastai head") == true, "\(Self.reason(oldFile) ?? "loaded")")
    }

    /// The version says whether the int16 shortcut path is there (the header's version is outside the
    /// checksum, so a mismatch is caught by meaning); its parameters must be complete and valid.
    @Test func shortcutParametersAreCheckedAgainstTheVersion() throws {
        var bytesAsVersion2 = try Self.model().encode()
        bytesAsVersion2[8] = 2
        #expect(Self.reason(bytesAsVersion2)?.contains("without int16 shortcut parameters") == true)
        var wideAsVersion1 = try Self.model(wide: true).encode()
        wideAsVersion1[8] = 1
        #expect(Self.reason(wideAsVersion1)?.contains("version 1 model with int16 shortcut parameters") == true)
        var incomplete = try Self.model(wide: true)
        incomplete.network.wideActivations["layer3.0.downsample"] = nil
        #expect(Self.reason(try incomplete.encode())?.contains("must name exactly") == true)
        var stray = try Self.model(wide: true)
        stray.network.activations["pool"] = QuantParams(scale: 1, zeroPoint: 0)
        #expect(Self.reason(try stray.encode())?.contains("does not have: pool") == true)
        var negative = try Self.model(wide: true)
        negative.network.wideActivations["layer1.0"]!.scale = -1
        #expect(Self.reason(try negative.encode())?.contains("invalid int16 shortcut") == true)
        // 12-bit activations: version 3 and every activation 12 bits, or refused.
        var fineAsVersion2 = try Self.model(wide: true, bits: 12).encode()
        fineAsVersion2[8] = 2
        #expect(Self.reason(fineAsVersion2)?.contains("version 2 model with 12-bit activations") == true)
        var bytesAsVersion3 = try Self.model(wide: true).encode()
        bytesAsVersion3[8] = 3
        #expect(Self.reason(bytesAsVersion3)?.contains("without 12-bit activations") == true)
        var mixed = try Self.model(wide: true, bits: 12)
        mixed.network.activations["layer2.0.conv1"] = QuantParams(scale: 0.1, zeroPoint: 0)
        #expect(Self.reason(try mixed.encode())?.contains("mixed widths (8, 12 bits)") == true)
        var outOfRange = try Self.model(wide: true, bits: 12)
        outOfRange.network.activations["input"]!.zeroPoint = 4096
        #expect(Self.reason(try outOfRange.encode())?.contains("invalid activation") == true)
    }
}

@Suite struct ActivationMapTests {
    @Test func torchvisionCAMIsTheWeightedFeatureSum() throws {
        let p = try Networks.parameters(.torchvision, classes: 2, seed: 14)
        let out = FloatResNet18(p).run(Networks.inputs[0])
        guard case .torchvision(let fc) = p.head else { return }
        let map = ClassActivationMap.compute(features: out.features, head: HeadWeights(p.head), classIndex: 1)
        let n = out.features.height * out.features.width
        var raw = [Float](repeating: 0, count: n)
        for k in 0..<512 { for j in 0..<n { raw[j] += fc.weights[512 + k] * out.features.values[k * n + j] } }
        let top = raw.max()!
        for j in 0..<n { #expect(abs(map.values[j] - max(raw[j], 0) / top) < 1e-4) }
    }

    /// The closed-form Grad-CAM weights of the fastai head against finite differences of the head itself.
    @Test func fastaiGradCAMMatchesFiniteDifferences() throws {
        let p = try Networks.parameters(.fastai, classes: 3, seed: 15)
        guard case .fastai(let fc1, let fc2) = p.head else { return }
        let features = FloatResNet18(p).run(Networks.inputs[1]).features
        let n = features.height * features.width
        func logit(_ a: FeatureMap) -> Double {
            let f = FloatResNet18.globalMax(a) + FloatResNet18.globalAverage(a)
            return Double(FloatResNet18.linear(FloatResNet18.linear(f, fc1, relu: true), fc2, relu: false)[2])
        }
        // Shifting all of channel k by h moves its max and its mean by h, so
        // d y / d(shift of channel k) = dy/dmax_k + dy/dmean_k = n x alpha_k.
        let h: Float = 1e-2
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<12 {
            let k = Int(rng.next() % 512)
            var plus = features, minus = features
            for j in 0..<n {
                plus.values[k * n + j] += h
                minus.values[k * n + j] -= h
            }
            let numeric = (logit(plus) - logit(minus)) / Double(2 * h)
            let analytic = Double(ClassActivationMap.gradientWeights(features: features, head: HeadWeights(p.head), classIndex: 2)[k]) * Double(n)
            #expect(abs(numeric - analytic) < 1e-2 * max(1, abs(numeric)), "channel \(k): numeric \(numeric), closed form \(analytic)")
        }
    }
}

@Suite struct WorkerPoolTests {
    @Test func parallelForCoversEveryIndexOnce() {
        for threads in [1, 2, 3, 7] {
            let pool = WorkerPool(threads: threads)
            for total in [0, 1, 2, 5, 64, 1000] {
                let hits = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(1, total))
                hits.initialize(repeating: 0)
                pool.parallelFor(total) { range in for i in range { hits[i] += 1 } }
                #expect(hits.prefix(total).allSatisfy { $0 == 1 }, "\(threads) threads, \(total) items")
                hits.deallocate()
            }
        }
    }

    /// The kernels' view: every index once, and each range with its own part number below the pool's count
    /// (a part indexes its own scratch buffer, so two ranges with one number would share it).
    @Test func kernelPartsAreDistinctAndBelowTheCount() {
        for threads in [1, 2, 3] {
            let pool = WorkerPool(threads: threads)
            for total in [1, 2, 5, 64] {
                let owner = UnsafeMutableBufferPointer<Int>.allocate(capacity: total)
                owner.initialize(repeating: -1)
                pool.kernelParallel.parts(total) { part, range in for i in range { owner[i] = part } }
                #expect(owner.allSatisfy { (0..<pool.kernelParallel.count).contains($0) }, "\(threads) threads, \(total) items")
                // Parts are contiguous ranges in order: the part number never decreases along the indices.
                #expect(zip(owner, owner.dropFirst()).allSatisfy { $0 <= $1 })
                #expect(Set(owner).count == min(threads, total))
                owner.deallocate()
            }
        }
    }

    /// Pools are created and dropped while their threads may still be waking: nothing may touch freed state.
    @Test func poolsComeAndGo() {
        for round in 0..<200 {
            let pool = WorkerPool(threads: 2 + round % 3)
            let seen = UnsafeMutableBufferPointer<Int>.allocate(capacity: pool.count)
            seen.initialize(repeating: 0)
            pool.run { worker in seen[worker] = worker + 1 }
            #expect(Array(seen) == Array(1...pool.count))
            seen.deallocate()
        }
    }
}
