import Foundation

/// What the model's training slices looked like to the network itself, so the engine can say when a slice is
/// unlike all of them (out of distribution): the mean and the precision (inverse of a shrunk covariance) of the
/// 512 features layer4's global average pool gives, as the int8 engine computes them, for a Mahalanobis
/// distance (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples").
///
/// Stored in the metadata JSON (key `ood`), its two arrays as base64 of little-endian f32: readers before this
/// key ignore it and run the model as before (they refuse unknown tensors, so the tensor section would not do),
/// and files without it load with `ood` nil (docs/model-format.md).
public struct OODSummary: Codable, Sendable, Equatable {
    /// "mahalanobis"
    public var method: String
    /// What the features are: "layer4 global average pool (int8 engine, dequantised)".
    public var features: String
    /// The activation the features are taken from, by the engines' names ("stem", "layer1.1", ..., "layer4.1").
    /// "layer4.1" in files written before the key (stored only when it is another).
    public var layer: String
    /// Which per-channel statistics of that activation, in this order: "mean" (its global average pool, one
    /// value per channel), or "mean+sd" (the mean, then the standard deviation over the plane: 2 x channels).
    /// "mean" in files written before the key (stored only when it is another).
    public var statistic: String
    public var dimension: Int
    public var mean: [Float]
    /// Row-major dimension x dimension, symmetric.
    public var precision: [Float]
    /// Ledoit-Wolf shrinkage towards a scaled identity that the covariance was given before inversion.
    public var shrinkage: Double
    /// The Mahalanobis distance (not squared) at which a slice counts as out of distribution: its `ood` score
    /// is distance / threshold, so 1 is the boundary whatever the model.
    public var threshold: Double
    /// How the threshold was chosen (e.g. "99.5th percentile of 917 validation slices").
    public var thresholdRule: String
    public var fitSamples: Int
    public var fitSource: String
    public var validationSamples: Int
    public var validationSource: String
    /// Distances on the validation slices ("p50", "p99", "max", ...), for the record.
    public var validationDistances: [String: Double]

    public static let defaultLayer = "layer4.1", defaultStatistic = "mean"
    public static let statistics = ["mean", "mean+sd"]

    public init(method: String = "mahalanobis", features: String, layer: String = defaultLayer, statistic: String = defaultStatistic,
                mean: [Float], precision: [Float], shrinkage: Double,
                threshold: Double, thresholdRule: String, fitSamples: Int, fitSource: String, validationSamples: Int,
                validationSource: String, validationDistances: [String: Double]) {
        self.method = method
        self.features = features
        self.layer = layer
        self.statistic = statistic
        self.dimension = mean.count
        self.mean = mean
        self.precision = precision
        self.shrinkage = shrinkage
        self.threshold = threshold
        self.thresholdRule = thresholdRule
        self.fitSamples = fitSamples
        self.fitSource = fitSource
        self.validationSamples = validationSamples
        self.validationSource = validationSource
        self.validationDistances = validationDistances
    }

    enum CodingKeys: String, CodingKey {
        case method, features, layer, statistic, dimension, mean, precision, shrinkage, threshold, thresholdRule = "threshold_rule"
        case fitSamples = "fit_samples", fitSource = "fit_source", validationSamples = "validation_samples"
        case validationSource = "validation_source", validationDistances = "validation_distances"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(String.self, forKey: .method)
        features = try c.decode(String.self, forKey: .features)
        layer = try c.decodeIfPresent(String.self, forKey: .layer) ?? Self.defaultLayer
        statistic = try c.decodeIfPresent(String.self, forKey: .statistic) ?? Self.defaultStatistic
        dimension = try c.decode(Int.self, forKey: .dimension)
        mean = try Self.floats(c.decode(String.self, forKey: .mean), key: .mean, in: c)
        precision = try Self.floats(c.decode(String.self, forKey: .precision), key: .precision, in: c)
        shrinkage = try c.decode(Double.self, forKey: .shrinkage)
        threshold = try c.decode(Double.self, forKey: .threshold)
        thresholdRule = try c.decode(String.self, forKey: .thresholdRule)
        fitSamples = try c.decode(Int.self, forKey: .fitSamples)
        fitSource = try c.decode(String.self, forKey: .fitSource)
        validationSamples = try c.decode(Int.self, forKey: .validationSamples)
        validationSource = try c.decode(String.self, forKey: .validationSource)
        validationDistances = try c.decode([String: Double].self, forKey: .validationDistances)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        try c.encode(features, forKey: .features)
        // The defaults are left out, so a layer4 summary is stored byte for byte as before the keys existed.
        if layer != Self.defaultLayer { try c.encode(layer, forKey: .layer) }
        if statistic != Self.defaultStatistic { try c.encode(statistic, forKey: .statistic) }
        try c.encode(dimension, forKey: .dimension)
        try c.encode(Self.base64(mean), forKey: .mean)
        try c.encode(Self.base64(precision), forKey: .precision)
        try c.encode(shrinkage, forKey: .shrinkage)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(thresholdRule, forKey: .thresholdRule)
        try c.encode(fitSamples, forKey: .fitSamples)
        try c.encode(fitSource, forKey: .fitSource)
        try c.encode(validationSamples, forKey: .validationSamples)
        try c.encode(validationSource, forKey: .validationSource)
        try c.encode(validationDistances, forKey: .validationDistances)
    }

    static func base64(_ values: [Float]) -> String {
        var d = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d.base64EncodedString()
    }

    static func floats(_ text: String, key: CodingKeys, in c: KeyedDecodingContainer<CodingKeys>) throws -> [Float] {
        guard let d = Data(base64Encoded: text), d.count % 4 == 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "not base64 of little-endian f32")
        }
        return d.withUnsafeBytes { raw in
            (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    /// Why this summary cannot be used, or nil.
    public var problem: String? {
        guard method == "mahalanobis" else { return "method \(method); this ichd knows mahalanobis" }
        guard dimension >= 1, mean.count == dimension, precision.count == dimension * dimension else {
            return "mean and precision do not match dimension \(dimension)"
        }
        guard Self.statistics.contains(statistic) else { return "statistic \(statistic); this ichd knows \(Self.statistics.joined(separator: ", "))" }
        guard (mean + precision).allSatisfy(\.isFinite) else { return "NaN or infinite values" }
        guard threshold > 0, threshold.isFinite else { return "threshold must be positive" }
        return nil
    }

    /// The Mahalanobis distance of `x` (dimension values) from the training features' mean.
    public func distance(_ x: [Float]) -> Double {
        precondition(x.count == dimension, "features of another size")
        let n = dimension
        var centred = [Float](repeating: 0, count: n)
        for i in 0..<n { centred[i] = x[i] - mean[i] }
        var total: Double = 0
        centred.withUnsafeBufferPointer { v in
            precision.withUnsafeBufferPointer { p in
                for i in 0..<n {
                    // One row: a float dot product eight lanes at a time (a plain loop would stay scalar: float
                    // sums may not be reordered), accumulated in double across rows.
                    let row = UnsafeRawPointer(p.baseAddress! + i * n), vec = UnsafeRawPointer(v.baseAddress!)
                    var acc = SIMD8<Float>()
                    var j = 0
                    while j + 8 <= n {
                        acc.addProduct(row.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self),
                                       vec.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self))
                        j += 8
                    }
                    var s = acc.sum()
                    while j < n { s += p[i * n + j] * v[j]; j += 1 }
                    total += Double(s) * Double(v[i])
                }
            }
        }
        return max(0, total).squareRoot()
    }

    /// The slice's `ood` score: its distance as a multiple of the threshold (1 and above: out of distribution).
    public func score(_ x: [Float]) -> Double { distance(x) / threshold }
}

/// Several Mahalanobis summaries, one per layer, read as one score (Lee et al. 2018's feature ensemble, without
/// its logistic weights: those need out-of-distribution examples to fit, and any we could choose would be the
/// ones we then report on). Each component's distance is divided by its own validation threshold, the slice's
/// score is the largest of those ratios divided by `threshold` (chosen on the same validation slices), so 1 is
/// again the boundary. Early layers see intensity and texture, layer4 what the classifier reads: a slice whose
/// texture is unlike the training slices' stands out in the first even where its layer4 features do not.
///
/// Stored under its own metadata key (`ood_layers`, docs/model-format.md) beside the layer4 summary (`ood`):
/// readers before it score `ood` from layer4 alone, as before; readers after it score the ensemble.
public struct OODEnsemble: Codable, Sendable, Equatable {
    /// "max of normalised mahalanobis"
    public var method: String
    public var components: [OODSummary]
    /// The combined score (the largest component ratio) at which a slice is out of distribution.
    public var threshold: Double
    public var thresholdRule: String
    /// Combined scores of the validation slices ("p50", "p99", "max"), and per component the share of them
    /// at or above its own threshold ("share_over.LAYER"), for the record.
    public var validationScores: [String: Double]

    public static let methodName = "max of normalised mahalanobis"

    public init(components: [OODSummary], threshold: Double, thresholdRule: String, validationScores: [String: Double]) {
        method = Self.methodName
        self.components = components
        self.threshold = threshold
        self.thresholdRule = thresholdRule
        self.validationScores = validationScores
    }

    enum CodingKeys: String, CodingKey {
        case method, components, threshold, thresholdRule = "threshold_rule", validationScores = "validation_scores"
    }

    /// The layers whose statistics the ensemble reads, each once.
    public var layers: [String] {
        var seen = Set<String>()
        return components.map(\.layer).filter { seen.insert($0).inserted }
    }

    /// Why this ensemble cannot be used, or nil.
    public var problem: String? {
        guard method == Self.methodName else { return "method \(method); this ichd knows \(Self.methodName)" }
        guard !components.isEmpty else { return "no components" }
        for c in components { if let p = c.problem { return "\(c.layer): \(p)" } }
        guard threshold > 0, threshold.isFinite else { return "threshold must be positive" }
        return nil
    }

    /// The largest component ratio (distance / its threshold); `features` gives a component's feature vector.
    public func ratio(_ features: (OODSummary) -> [Float]) -> Double {
        components.map { $0.score(features($0)) }.max() ?? 0
    }

    /// The slice's `ood` score (1 and above: out of distribution).
    public func score(_ features: (OODSummary) -> [Float]) -> Double { ratio(features) / threshold }
}
