import Foundation
import ICHEngine
import ICHIngest
import ICHModel
import ICHPreprocessing

/// Fits the out-of-distribution summary (`OODSummary`) the converter stores in the model: the mean and shrunk
/// covariance of the pooled layer4 features on in-distribution slices (the training set), and a distance
/// threshold chosen on other in-distribution slices (the validation set), never on test data.
public enum OODFit {
    public static let featureDescription = "layer4 global average pool, 512 features (int8 engine, dequantised)"

    /// One scored slice: its pooled features, the channel statistics asked for, its logits and the key its labels
    /// are filed under.
    public struct Sample: Sendable {
        public var features: [Float]
        public var statistics: [String: ChannelStatistics] = [:]
        public var logits: [Float]
        public var key: String

        public init(features: [Float], statistics: [String: ChannelStatistics] = [:], logits: [Float], key: String) {
            (self.features, self.statistics, self.logits, self.key) = (features, statistics, logits, key)
        }
    }

    /// Up to `limit` scorable slices of `directory` (evenly spread over its sorted files, so over series), scored
    /// through the appliance's preprocessing and `engine`. Streams: one input in memory at a time. `statistics`:
    /// the activations whose channel statistics each sample keeps (for `ensemble`).
    public static func samples(directory: String, pipeline: SlicePipeline, engine: Int8ResNet18, limit: Int,
                               statistics: Set<String> = [], log: (String) -> Void) throws(ConversionError) -> [Sample] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConversionError("out-of-distribution folder \(directory) does not exist")
        }
        var scorable: [(file: String, frame: Int?)] = []
        for file in SliceFile.files(inFolder: directory) {
            pipeline.process(path: file, prepare: false) { result in
                if case .ready = result.outcome { scorable.append((file, result.frame)) }
            }
        }
        guard !scorable.isEmpty else { throw ConversionError("out-of-distribution folder \(directory) holds no scorable slices") }
        var out: [Sample] = []
        let chosen = CalibrationSlices.evenlySpaced(scorable, max: limit)
        for slice in chosen {
            pipeline.process(path: slice.file, frames: slice.frame.map { $0..<($0 + 1) }) { result in
                if case .ready(_, let input?) = result.outcome {
                    let run = engine.run(FeatureMap(input), statistics: statistics)
                    out.append(Sample(features: SliceScorer.pooledFeatures(run.features), statistics: run.channelStatistics,
                                      logits: run.logits, key: result.labelKey))
                }
            }
            if out.count % 250 == 0 { log("  out-of-distribution features, \(directory): \(out.count)/\(chosen.count)") }
        }
        log("\(directory): pooled features of \(out.count) of \(scorable.count) scorable slices")
        return out
    }

    /// Mean, Ledoit-Wolf shrunk covariance, its inverse; the threshold at `quantile` of the validation slices'
    /// distances.
    public static func summary(fit: [[Float]], validation: [[Float]], quantile: Double, fitSource: String,
                               validationSource: String) throws(ConversionError) -> OODSummary {
        guard let d = fit.first?.count, fit.count >= 2, !validation.isEmpty else {
            throw ConversionError("out-of-distribution summary: needs at least 2 fit slices and 1 validation slice")
        }
        let (mean, covariance, shrinkage) = ledoitWolf(fit.map { $0.map(Double.init) }, dimension: d)
        guard let precision = inverseSPD(covariance, dimension: d) else {
            throw ConversionError("out-of-distribution summary: the shrunk covariance is not positive definite")
        }
        var s = OODSummary(features: featureDescription, mean: mean.map(Float.init), precision: precision.map(Float.init),
                           shrinkage: shrinkage, threshold: 1, thresholdRule: "", fitSamples: fit.count, fitSource: fitSource,
                           validationSamples: validation.count, validationSource: validationSource, validationDistances: [:])
        let distances = validation.map(s.distance).sorted()
        func at(_ q: Double) -> Double { nearestQuantile(distances, q) }
        s.threshold = at(quantile)
        s.thresholdRule = String(format: "%g", 100 * quantile) + "th percentile of the distances of \(validation.count) validation slices"
        let fitDistances = fit.map(s.distance).sorted()
        s.validationDistances = ["p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": distances.last!,
                                 "fit_p50": fitDistances[fitDistances.count / 2], "fit_max": fitDistances.last!]
        return s
    }

    /// The value at quantile `q` of ascending `sorted` (non-empty), the nearest rank (numpy's "nearest").
    static func nearestQuantile(_ sorted: [Double], _ q: Double) -> Double {
        sorted[min(sorted.count - 1, Int((q * Double(sorted.count - 1)).rounded()))]
    }

    /// One summary per (layer, statistic) in `components`, each with its own threshold at `quantile` of the
    /// validation slices' distances, read as one score whose threshold is `quantile` of the validation slices'
    /// largest ratios (`OODEnsemble`): the validation slices out of distribution stay 1 - `quantile`.
    public static func ensemble(fit: [Sample], validation: [Sample], components: [(layer: String, statistic: String)],
                                quantile: Double, fitSource: String, validationSource: String) throws(ConversionError) -> OODEnsemble {
        guard !components.isEmpty else { throw ConversionError("out-of-distribution layers: none given") }
        var summaries: [OODSummary] = []
        for (layer, statistic) in components {
            guard fit.allSatisfy({ $0.statistics[layer] != nil }), validation.allSatisfy({ $0.statistics[layer] != nil }) else {
                throw ConversionError("out-of-distribution layers: no statistics of \(layer) (not an activation the engine names)")
            }
            guard OODSummary.statistics.contains(statistic) else {
                throw ConversionError("out-of-distribution statistic \(statistic): one of \(OODSummary.statistics.joined(separator: ", "))")
            }
            var s = try summary(fit: fit.map { $0.statistics[layer]!.vector(statistic) },
                                validation: validation.map { $0.statistics[layer]!.vector(statistic) },
                                quantile: quantile, fitSource: fitSource, validationSource: validationSource)
            s.layer = layer
            s.statistic = statistic
            s.features = "\(layer) per-channel \(statistic), \(s.dimension) features (int8 engine, dequantised)"
            summaries.append(s)
        }
        var e = OODEnsemble(components: summaries, threshold: 1, thresholdRule: "", validationScores: [:])
        let ratios = validation.map { v in e.ratio { v.statistics[$0.layer]!.vector($0.statistic) } }.sorted()
        func at(_ q: Double) -> Double { nearestQuantile(ratios, q) }
        e.threshold = at(quantile)
        e.thresholdRule = String(format: "%g", 100 * quantile)
            + "th percentile of the largest component ratio (distance / the component's own threshold) of \(validation.count) validation slices"
        var scores = ["p50": at(0.5) / e.threshold, "p99": at(0.99) / e.threshold, "max": ratios.last! / e.threshold]
        for c in summaries {
            let over = validation.filter { c.score($0.statistics[c.layer]!.vector(c.statistic)) >= 1 }.count
            scores["share_over.\(c.layer).\(c.statistic)"] = Double(over) / Double(validation.count)
        }
        e.validationScores = scores
        return e
    }

    /// The sample mean, and the covariance shrunk towards mu I (mu its mean variance) by the Ledoit-Wolf
    /// estimate of the best shrinkage (Ledoit & Wolf 2004, as scikit-learn's `ledoit_wolf` computes it): with
    /// 512 features from a few thousand correlated slices the sample covariance is nearly singular, and its
    /// inverse would weigh noise directions without bound.
    public static func ledoitWolf(_ x: [[Double]], dimension d: Int) -> (mean: [Double], covariance: [Double], shrinkage: Double) {
        let n = x.count
        var mean = [Double](repeating: 0, count: d)
        for row in x { for j in 0..<d { mean[j] += row[j] } }
        for j in 0..<d { mean[j] /= Double(n) }
        let centred = x.map { row in (0..<d).map { row[$0] - mean[$0] } }
        var s = [Double](repeating: 0, count: d * d), s2 = [Double](repeating: 0, count: d * d)
        s.withUnsafeMutableBufferPointer { s in
            s2.withUnsafeMutableBufferPointer { s2 in
                for row in centred {
                    row.withUnsafeBufferPointer { r in
                        for i in 0..<d {
                            let a = r[i], a2 = a * a
                            for j in i..<d {
                                s[i * d + j] += a * r[j]
                                s2[i * d + j] += a2 * r[j] * r[j]
                            }
                        }
                    }
                }
            }
        }
        for i in 0..<d { for j in i..<d { s[i * d + j] /= Double(n); s[j * d + i] = s[i * d + j]; s2[j * d + i] = s2[i * d + j] } }
        let mu = (0..<d).map { s[$0 * d + $0] }.reduce(0, +) / Double(d)
        let frobenius = s.reduce(0) { $0 + $1 * $1 }
        let beta0 = s2.reduce(0, +)
        var beta = (beta0 / Double(n) - frobenius) / (Double(d) * Double(n))
        let delta = (frobenius - 2 * mu * (mu * Double(d)) + Double(d) * mu * mu) / Double(d)
        beta = min(beta, delta)
        let shrinkage = delta > 0 ? max(0, beta / delta) : 1
        var covariance = s.map { (1 - shrinkage) * $0 }
        for i in 0..<d { covariance[i * d + i] += shrinkage * mu }
        return (mean, covariance, shrinkage)
    }

    /// The inverse of a symmetric positive definite matrix through its Cholesky factor; nil when it is not.
    public static func inverseSPD(_ a: [Double], dimension n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var diagonal = a[j * n + j]
            for k in 0..<j { diagonal -= l[j * n + k] * l[j * n + k] }
            guard diagonal > 0 else { return nil }
            let ljj = diagonal.squareRoot()
            l[j * n + j] = ljj
            for i in (j + 1)..<max(j + 1, n) {
                var v = a[i * n + j]
                for k in 0..<j { v -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = v / ljj
            }
        }
        // M = L^-1 (lower triangular), then A^-1 = M^T M.
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            m[i * n + i] = 1 / l[i * n + i]
            for j in 0..<i {
                var v = 0.0
                for k in j..<i { v -= l[i * n + k] * m[k * n + j] }
                m[i * n + j] = v / l[i * n + i]
            }
        }
        var inverse = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                var v = 0.0
                for k in j..<n { v += m[k * n + i] * m[k * n + j] }
                inverse[i * n + j] = v
                inverse[j * n + i] = v
            }
        }
        return inverse
    }
}
