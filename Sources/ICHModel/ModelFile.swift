import Crypto
import Foundation
import ICHIngest
import ICHPreprocessing

/// What a model file says about itself (the JSON block of `.ichm`).
public struct ModelMetadata: Codable, Sendable, Equatable {
    public var architecture: String = "resnet18"
    public var head: WeightLayout
    public var classNames: [String]
    public var preprocessing: Preprocessing
    /// Per class, the probability at or above which the class is called positive (operating points).
    public var thresholds: [Float]
    public var quantization: QuantizationInfo
    public var calibration: CalibrationSummary
    public var sourceSHA256: String
    public var converterVersion: String
    public var created: String
    public var modelCard: String
    /// The training features' summary for the out-of-distribution score; nil in files written without it (and
    /// before it existed): such a model scores as before and reports no `ood`.
    public var ood: OODSummary?
    /// Per-layer summaries read as one score (`OODEnsemble`); when present the `ood` score is the ensemble's, and
    /// `ood` (layer4) stays for readers before this key. nil in files written without it.
    public var oodLayers: OODEnsemble?
    /// Temperature calibration of the probabilities (nil: the network's sigmoid as it is, as before it existed).
    public var probabilityCalibration: ProbabilityCalibration?
    public var tensors: [TensorEntry] = []

    public init(head: WeightLayout, classNames: [String], preprocessing: Preprocessing, thresholds: [Float],
                quantization: QuantizationInfo, calibration: CalibrationSummary, sourceSHA256: String,
                converterVersion: String, created: String, modelCard: String) {
        self.head = head
        self.classNames = classNames
        self.preprocessing = preprocessing
        self.thresholds = thresholds
        self.quantization = quantization
        self.calibration = calibration
        self.sourceSHA256 = sourceSHA256
        self.converterVersion = converterVersion
        self.created = created
        self.modelCard = modelCard
    }

    public var inputSize: Int { preprocessing.outputSize }

    enum CodingKeys: String, CodingKey {
        case architecture, head, classNames = "class_names", preprocessing, thresholds, quantization, calibration
        case sourceSHA256 = "source_sha256", converterVersion = "converter_version", created, modelCard = "model_card", tensors
        case ood, oodLayers = "ood_layers", probabilityCalibration = "probability_calibration"
    }
}

public struct QuantizationInfo: Codable, Sendable, Equatable {
    /// e.g. "int8: weights symmetric per output channel; activations u8 affine per tensor; int32 accumulation"
    public var scheme: String
    /// e.g. "fp32 multiply, round half to even, clamp" (see ICHKernels/Requantize.swift)
    public var requantization: String
    public var activations: [String: QuantParams]
    /// The int16 shortcut path's parameters (format version 2); nil in version 1 files.
    public var wideActivations: [String: WideQuantParams]?

    public init(scheme: String, requantization: String, activations: [String: QuantParams],
                wideActivations: [String: WideQuantParams]? = nil) {
        self.scheme = scheme
        self.requantization = requantization
        self.activations = activations
        self.wideActivations = wideActivations
    }

    enum CodingKeys: String, CodingKey { case scheme, requantization, activations, wideActivations = "wide_activations" }
}

public struct CalibrationSummary: Codable, Sendable, Equatable {
    /// "min-max", "percentile" or "mse": the method chosen by measured output error.
    public var method: String
    /// Mean absolute probability difference int8 vs float on the selection samples, per method tried.
    public var methodErrors: [String: Double]
    public var samples: Int
    public var heldOutSamples: Int
    /// Folder of calibration slices, or "synthetic phantoms".
    public var source: String
    /// True when no real calibration data was given (`--allow-synthetic-calibration`).
    public var synthetic: Bool
    /// Tensors whose range came from another method than `method`, because that lowered the measured output
    /// error (tensor name -> method); nil when the method was forced (and in files written before this field).
    public var perTensorMethods: [String: String]?
    /// How the weights were rounded to their grid: "nearest" or "gptq"; nil in files written before this field
    /// (nearest).
    public var weightRounding: String?
    /// Whether the network was channel-equalised before quantisation (nil in older files: no).
    public var channelEqualization: Bool?
    /// Mean |p_int8 - p_float| of each weight candidate tried ("gptq, equalised", ...), when more than one was.
    public var weightCandidateErrors: [String: Double]?
    /// The width of the activations convolutions read (8 or 12; nil in older files: 8), and, when the converter
    /// chose it, each width's largest |p_int8 - p_float| on the held-out slices ("8", "12").
    public var activationBits: Int?
    public var activationBitErrors: [String: Double]?

    public init(method: String, methodErrors: [String: Double], samples: Int, heldOutSamples: Int, source: String, synthetic: Bool,
                perTensorMethods: [String: String]? = nil, weightRounding: String? = nil, channelEqualization: Bool? = nil,
                weightCandidateErrors: [String: Double]? = nil, activationBits: Int? = nil,
                activationBitErrors: [String: Double]? = nil) {
        self.method = method
        self.methodErrors = methodErrors
        self.samples = samples
        self.heldOutSamples = heldOutSamples
        self.source = source
        self.synthetic = synthetic
        self.perTensorMethods = perTensorMethods
        self.weightRounding = weightRounding
        self.channelEqualization = channelEqualization
        self.weightCandidateErrors = weightCandidateErrors
        self.activationBits = activationBits
        self.activationBitErrors = activationBitErrors
    }

    enum CodingKeys: String, CodingKey {
        case perTensorMethods = "per_tensor_methods", weightRounding = "weight_rounding"
        case channelEqualization = "channel_equalization", weightCandidateErrors = "weight_candidate_errors"
        case activationBits = "activation_bits", activationBitErrors = "activation_bit_errors"
        case method, methodErrors = "method_errors", samples, heldOutSamples = "held_out_samples", source, synthetic
    }
}

public struct TensorEntry: Codable, Sendable, Equatable {
    public var name: String
    /// "i8", "i32" or "f32", little-endian
    public var dtype: String
    public var shape: [Int]
    /// Byte offset from the start of the tensor section (a multiple of 64).
    public var offset: Int
    public var length: Int
}

public struct ModelFileError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The `.ichm` file: the int8 ResNet18 and its metadata.
///
///     0   8   magic "ICHM\r\n\u{1A}\n" (catches text-mode and truncation-by-transfer damage, as PNG's does)
///     8   4   format version (little-endian u32): 1, 2 for a model with an int16 shortcut path (which a
///             reader of version 1 would run without it, so it must refuse the file), 3 for one whose
///             convolutions also read 12-bit activations (`QuantParams.bits`, which a version 2 reader would
///             take for bytes)
///     12  4   flags, 0
///     16  8   metadata JSON length L
///     24  8   payload length P: every byte after this 64-byte header
///     32  32  SHA-256 of the payload
///     64  L   metadata JSON, then zero padding to a multiple of 64
///     ..      tensor section: each tensor 64-byte aligned (offsets relative to the section), so the file can be
///             memory-mapped and tensors read in place
///
/// Loading checks all of it before anything is used: nothing is half-loaded.
public struct ModelFile: Sendable {
    public static let magic: [UInt8] = Array("ICHM\r\n".utf8) + [0x1A, 0x0A]
    /// The newest format version this ichd writes and reads; it reads every version from 1.
    public static let formatVersion: UInt32 = 3

    /// The version a network needs: the oldest that holds everything it uses (older readers keep reading the
    /// models they can run).
    static func version(of network: QuantizedResNet18) -> UInt32 {
        network.activationBits != 8 ? 3 : network.hasWideShortcut ? 2 : 1
    }
    static let headerSize = 64
    static let alignment = 64

    public var metadata: ModelMetadata
    public var network: QuantizedResNet18

    public init(metadata: ModelMetadata, network: QuantizedResNet18) {
        self.metadata = metadata
        self.network = network
    }

    // MARK: Writing

    /// Writes through a temporary file and a rename: a failed write leaves no model behind.
    public func write(to path: String) throws {
        try AtomicFile.write(try encode(), to: path)
    }

    public func encode() throws -> Data {
        var section = Data()
        var entries: [TensorEntry] = []
        func add(_ name: String, _ dtype: String, _ shape: [Int], _ bytes: Data) {
            while section.count % Self.alignment != 0 { section.append(0) }
            entries.append(TensorEntry(name: name, dtype: dtype, shape: shape, offset: section.count, length: bytes.count))
            section.append(bytes)
        }
        for (name, layer) in ModelLayers.convs(network) {
            add("\(name).weight", "i8", [layer.outChannels, layer.inChannels, layer.kernel, layer.kernel], layer.weights.withUnsafeBytes { Data($0) })
            add("\(name).weight_scale", "f32", [layer.outChannels], Self.littleEndian(layer.weightScales))
            add("\(name).bias", "i32", [layer.outChannels], Self.littleEndian(layer.bias))
        }
        for (name, layer) in ModelLayers.linears(network.head) {
            add("\(name).weight", "i8", [layer.outFeatures, layer.inFeatures], layer.weights.withUnsafeBytes { Data($0) })
            add("\(name).weight_scale", "f32", [layer.outFeatures], Self.littleEndian(layer.weightScales))
            add("\(name).bias", "i32", [layer.outFeatures], Self.littleEndian(layer.bias))
        }
        for (name, layer) in ModelLayers.floatLinears(network.head) {
            add("\(name).weight", "f32", [layer.outFeatures, layer.inFeatures], Self.littleEndian(layer.weights))
            add("\(name).bias", "f32", [layer.outFeatures], Self.littleEndian(layer.bias))
        }
        var meta = metadata
        meta.tensors = entries
        meta.quantization.activations = network.activations
        meta.quantization.wideActivations = network.hasWideShortcut ? network.wideActivations : nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Self.assemble(version: Self.version(of: network), metadataJSON: try encoder.encode(meta),
                             tensorSection: section)
    }

    /// Header, metadata (zero-padded to the alignment) and tensor section, with the payload's length and SHA-256.
    static func assemble(version: UInt32, metadataJSON: Data, tensorSection: Data) -> Data {
        var json = metadataJSON
        while (Self.headerSize + json.count) % Self.alignment != 0 { json.append(0) }
        let payload = json + tensorSection
        var out = Data(Self.magic)
        Self.append(&out, version)
        Self.append(&out, UInt32(0))
        Self.append(&out, UInt64(json.count))
        Self.append(&out, UInt64(payload.count))
        out.append(contentsOf: SHA256.hash(data: payload))
        out.append(payload)
        return out
    }

    // MARK: Reading

    public static func load(path: String) throws(ModelFileError) -> ModelFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw ModelFileError("cannot read \(path): \(error.localizedDescription)")
        }
        return try decode(data)
    }

    public static func decode(_ data: Data) throws(ModelFileError) -> ModelFile {
        guard data.count >= headerSize, Array(data.prefix(8)) == magic else {
            throw ModelFileError("not an ichd model file (no ICHM header)")
        }
        let version: UInt32 = read(data, 8)
        guard (1...formatVersion).contains(version) else {
            throw ModelFileError("model format version \(version); this ichd reads versions 1 to \(formatVersion)")
        }
        let metadataLength = Int(clamping: read(data, 16) as UInt64)
        let payloadLength = Int(clamping: read(data, 24) as UInt64)
        guard payloadLength == data.count - headerSize else {
            throw ModelFileError("truncated or padded model file: header says \(payloadLength + headerSize) bytes, file has \(data.count)")
        }
        guard metadataLength > 0, metadataLength <= payloadLength, (headerSize + metadataLength) % alignment == 0 else {
            throw ModelFileError("corrupted model file: metadata length \(metadataLength)")
        }
        // Slices, not copies: the mapped file is read in place (a copy would double the model's memory at load).
        let payload = data[(data.startIndex + headerSize)...]
        guard Array(data[(data.startIndex + 32)..<(data.startIndex + 64)]) == Array(SHA256.hash(data: payload)) else {
            throw ModelFileError("corrupted model file: SHA-256 of the payload does not match")
        }
        let json = payload.prefix(metadataLength)
        let metadata: ModelMetadata
        do {
            metadata = try JSONDecoder().decode(ModelMetadata.self, from: Data(json.prefix { $0 != 0 }))
        } catch {
            throw ModelFileError("unreadable model metadata: \(error)")
        }
        let section = payload[(payload.startIndex + metadataLength)...]
        return try assemble(metadata, section, version: version)
    }

    static func assemble(_ metadata: ModelMetadata, _ section: Data, version: UInt32) throws(ModelFileError) -> ModelFile {
        guard metadata.architecture == "resnet18" else {
            throw ModelFileError("architecture \(metadata.architecture); this ichd runs resnet18")
        }
        let classes = metadata.classNames.count
        guard classes >= 1, metadata.thresholds.count == classes, metadata.thresholds.allSatisfy({ (0...1).contains($0) }) else {
            throw ModelFileError("\(classes) class names but \(metadata.thresholds.count) thresholds (each within 0...1)")
        }
        if let problem = metadata.preprocessing.problem { throw ModelFileError("preprocessing: \(problem)") }
        if let ood = metadata.ood {
            if let problem = ood.problem { throw ModelFileError("out-of-distribution summary: \(problem)") }
            guard ood.dimension == 512 else {
                throw ModelFileError("out-of-distribution summary of \(ood.dimension) features; ResNet18 pools 512")
            }
        }
        if let ensemble = metadata.oodLayers {
            if let problem = ensemble.problem { throw ModelFileError("out-of-distribution layers: \(problem)") }
            for c in ensemble.components {
                guard let channels = ResNet18Parameters.channels(of: c.layer) else {
                    throw ModelFileError("out-of-distribution layers: ResNet18 has no activation \(c.layer) to take statistics of")
                }
                let expected = c.statistic == "mean" ? channels : 2 * channels
                guard c.dimension == expected else {
                    throw ModelFileError("out-of-distribution layers: \(c.layer) \(c.statistic) has \(c.dimension) features; \(channels) channels give \(expected)")
                }
            }
        }
        if let c = metadata.probabilityCalibration {
            if let problem = c.problem(classes: classes) { throw ModelFileError("probability calibration: \(problem)") }
            for (i, t) in metadata.thresholds.enumerated() {
                guard c.thresholdWithinBounds(t, class: i) else {
                    throw ModelFileError("probability calibration: the threshold of \(metadata.classNames[i]) lies beyond its logit bound")
                }
            }
        }
        guard metadata.preprocessing.channels == 3 else { throw ModelFileError("ResNet18 takes 3 input channels") }
        var table: [String: TensorEntry] = [:]
        for entry in metadata.tensors {
            let width = ["i8": 1, "i32": 4, "f32": 4][entry.dtype] ?? 0
            guard width > 0, entry.offset >= 0, entry.offset % alignment == 0, entry.length == width * entry.shape.reduce(1, *),
                  entry.offset + entry.length <= section.count else {
                throw ModelFileError("tensor \(entry.name): bad dtype, shape or byte range")
            }
            table[entry.name] = entry
        }
        if metadata.head == .fastai && table["head.fc1.weight_scale"] != nil {
            throw ModelFileError("int8 fastai head (written by a converter before 2026-12-06, which this ichd does not run): "
                                 + "convert the weights again with ichd convert")
        }
        let activations = metadata.quantization.activations
        let wide = metadata.quantization.wideActivations ?? [:]
        // Version 2 is the int16 shortcut path; a version 1 file carrying it (or a version 2 one without) is damaged.
        guard (version >= 2) == !wide.isEmpty else {
            throw ModelFileError(version >= 2 ? "format version \(version) model without int16 shortcut parameters"
                                              : "format version 1 model with int16 shortcut parameters")
        }
        let byteNames = QuantizedResNet18.activationNames(wideShortcut: !wide.isEmpty)
        for name in byteNames where activations[name] == nil {
            throw ModelFileError("no quantisation parameters for activation \(name)")
        }
        if let extra = Set(activations.keys).subtracting(byteNames).sorted().first {
            throw ModelFileError("quantisation parameters for an activation this model does not have: \(extra)")
        }
        for q in activations.values where !q.isValid {
            throw ModelFileError("invalid activation quantisation parameters")
        }
        // One width for every activation the convolutions read; 12 bits only with the shortcut path, in version 3.
        let bits = Set(activations.values.map(\.bits))
        guard bits.count == 1, let width = bits.first else {
            throw ModelFileError("activations of mixed widths (\(bits.sorted().map(String.init).joined(separator: ", ")) bits)")
        }
        guard (version >= 3) == (width != 8) else {
            throw ModelFileError(version >= 3 ? "format version \(version) model without 12-bit activations"
                                              : "format version \(version) model with \(width)-bit activations")
        }
        if !wide.isEmpty {
            guard Set(wide.keys) == Set(QuantizedResNet18.wideActivationNames) else {
                throw ModelFileError("int16 shortcut parameters must name exactly: "
                                     + QuantizedResNet18.wideActivationNames.joined(separator: ", "))
            }
            for q in wide.values where !(q.scale > 0 && q.scale.isFinite) {
                throw ModelFileError("invalid int16 shortcut quantisation parameters")
            }
        }

        func tensor<T>(_ name: String, _ dtype: String, _ shape: [Int], _: T.Type) throws(ModelFileError) -> [T] {
            guard let e = table[name] else { throw ModelFileError("missing tensor \(name)") }
            guard e.dtype == dtype, e.shape == shape else {
                throw ModelFileError("tensor \(name): expected \(dtype) \(shape), found \(e.dtype) \(e.shape)")
            }
            return section.withUnsafeBytes { raw in
                (0..<(e.length / MemoryLayout<T>.size)).map { raw.loadUnaligned(fromByteOffset: e.offset + $0 * MemoryLayout<T>.size, as: T.self) }
            }
        }
        func conv(_ name: String, _ o: Int, _ i: Int, _ k: Int, stride: Int, padding: Int) throws(ModelFileError) -> QuantizedConv {
            let scales = try tensor("\(name).weight_scale", "f32", [o], Float.self)
            guard scales.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw ModelFileError("tensor \(name).weight_scale: non-positive scale") }
            return QuantizedConv(outChannels: o, inChannels: i, kernel: k, stride: stride, padding: padding,
                                 weights: try tensor("\(name).weight", "i8", [o, i, k, k], Int8.self), weightScales: scales,
                                 bias: try tensor("\(name).bias", "i32", [o], Int32.self).map { Int32(littleEndian: $0) })
        }
        func linear(_ name: String, _ o: Int, _ i: Int) throws(ModelFileError) -> QuantizedLinear {
            let scales = try tensor("\(name).weight_scale", "f32", [o], Float.self)
            guard scales.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw ModelFileError("tensor \(name).weight_scale: non-positive scale") }
            return QuantizedLinear(outFeatures: o, inFeatures: i, weights: try tensor("\(name).weight", "i8", [o, i], Int8.self),
                                   weightScales: scales, bias: try tensor("\(name).bias", "i32", [o], Int32.self).map { Int32(littleEndian: $0) })
        }

        let stem = try conv("stem", 64, 3, 7, stride: 2, padding: 3)
        var blocks: [QuantizedBlock] = []
        var channels = 64
        for (i, name) in ResNet18Parameters.blockNames.enumerated() {
            let out = 64 << (i / 2)
            let stride = (i % 2 == 0 && i > 0) ? 2 : 1
            let hasDown = i % 2 == 0 && i > 0
            blocks.append(QuantizedBlock(
                conv1: try conv("\(name).conv1", out, channels, 3, stride: stride, padding: 1),
                conv2: try conv("\(name).conv2", out, out, 3, stride: 1, padding: 1),
                downsample: hasDown ? try conv("\(name).downsample", out, channels, 1, stride: stride, padding: 0) : nil))
            channels = out
        }
        func floatLinear(_ name: String, _ o: Int, _ i: Int) throws(ModelFileError) -> LinearParameters {
            let weights = try tensor("\(name).weight", "f32", [o, i], Float.self), bias = try tensor("\(name).bias", "f32", [o], Float.self)
            guard (weights + bias).allSatisfy(\.isFinite) else { throw ModelFileError("tensor \(name): NaN or infinite values") }
            return LinearParameters(outFeatures: o, inFeatures: i, weights: weights, bias: bias)
        }

        let head: QuantizedHead = metadata.head == .torchvision
            ? .torchvision(fc: try linear("fc", classes, 512))
            : .fastai(fc1: try floatLinear("head.fc1", 512, 1024), fc2: try floatLinear("head.fc2", classes, 512))
        let expectedNames = Set(ModelLayers.convs(QuantizedResNet18(stem: stem, blocks: blocks, head: head, activations: activations)).map(\.0)
            + ModelLayers.linears(head).map(\.0)).flatMap { ["\($0).weight", "\($0).weight_scale", "\($0).bias"] }
            + ModelLayers.floatLinears(head).flatMap { ["\($0.0).weight", "\($0.0).bias"] }
        if let extra = table.keys.first(where: { !expectedNames.contains($0) }) {
            throw ModelFileError("unexpected tensor \(extra)")
        }
        return ModelFile(metadata: metadata, network: QuantizedResNet18(stem: stem, blocks: blocks, head: head, activations: activations,
                                                                        wideActivations: wide))
    }

    // MARK: Helpers

    static func littleEndian<T: FixedWidthInteger>(_ values: [T]) -> Data {
        var d = Data(capacity: values.count * MemoryLayout<T>.size)
        for v in values { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }

    static func littleEndian(_ values: [Float]) -> Data { littleEndian(values.map(\.bitPattern)) }

    static func append<T: FixedWidthInteger>(_ d: inout Data, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) }
    }

    static func read<T: FixedWidthInteger>(_ d: Data, _ offset: Int) -> T {
        d.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
