import Foundation
import ICHIngest
import ICHKernels
import ICHModel
import ICHPreprocessing

/// The scores of one slice.
public struct SliceScore: Sendable {
    public var classNames: [String]
    public var logits: [Float]
    public var probabilities: [Float]
    public var thresholds: [Float]
    /// Indices of the classes at or above their threshold.
    public var positives: [Int] { probabilities.indices.filter { probabilities[$0] >= thresholds[$0] } }
    /// Activation maps for the requested classes.
    public var heatmaps: [Heatmap]
    /// How unlike the model's training slices this one is: the Mahalanobis distance of its pooled features as a
    /// multiple of the model's threshold (`OODSummary`), or the largest of several layers' (`OODEnsemble`, when
    /// the model has one), so 1 and above is out of distribution; nil when the model carries no summary.
    public var ood: Float?
    /// True when the slice is out of distribution: its probabilities are not evidence of anything.
    public var isOutOfDistribution: Bool { (ood ?? 0) >= 1 }

    public init(classNames: [String], logits: [Float], probabilities: [Float], thresholds: [Float], heatmaps: [Heatmap],
                ood: Float? = nil) {
        self.classNames = classNames
        self.logits = logits
        self.probabilities = probabilities
        self.thresholds = thresholds
        self.heatmaps = heatmaps
        self.ood = ood
    }
}

public struct ScorerError: Error, CustomStringConvertible {
    public let description: String
}

/// The one API the daemon, `ichd infer` and `ichd eval` score through: a model (int8 `.ichm`, or float
/// `.safetensors` for reference runs) plus its preprocessing description and thresholds.
public struct SliceScorer: Sendable {
    public enum Engine: Sendable {
        case int8(Int8ResNet18)
        case float(FloatResNet18)
    }

    public let engine: Engine
    public let classNames: [String]
    /// Per class, the probability at or above which the class is positive, on the scale of `probabilities`
    /// (the model's thresholds mapped through its probability calibration, when it has one).
    public private(set) var thresholds: [Float]
    /// Temperature and logit bound per class (nil: probabilities are the network's sigmoid as it is).
    public private(set) var probabilityCalibration: ProbabilityCalibration?
    /// The thresholds as the model states them, on the uncalibrated scale.
    public private(set) var uncalibratedThresholds: [Float]
    public let preprocessing: Preprocessing
    /// The model's training-feature summary of layer4 (nil: no `ood` scores, unless `oodLayers`).
    public let oodSummary: OODSummary?
    /// The model's per-layer summaries; when present the `ood` score is theirs (`OODEnsemble`).
    public let oodLayers: OODEnsemble?
    /// The activations whose channel statistics the ensemble reads.
    let statisticLayers: Set<String>
    let head: HeadWeights

    public var engineName: String {
        switch engine {
        case .int8: "int8"
        case .float: "float32"
        }
    }

    /// `threads`: the int8 engine's worker count (results are identical for every count).
    /// The model is consumed (the engine releases its int8 weights as it packs them).
    public init(model: consuming ModelFile, threads: Int = 1, kernel: ConvKernel = .native) {
        classNames = model.metadata.classNames
        thresholds = model.metadata.thresholds
        uncalibratedThresholds = thresholds
        probabilityCalibration = nil
        preprocessing = model.metadata.preprocessing
        oodSummary = model.metadata.ood
        oodLayers = model.metadata.oodLayers
        statisticLayers = Set(oodLayers?.layers ?? [])
        head = HeadWeights(model.network)
        let calibration = model.metadata.probabilityCalibration, raw = model.metadata.thresholds
        let side = model.metadata.inputSize
        engine = .int8(Int8ResNet18((consume model).network, threads: threads, kernel: kernel, plannedInputSize: side))
        calibrate(calibration, thresholds: raw)
    }

    /// A float reference scorer straight from trained weights (RSNA class names for 6 outputs, thresholds 0.5).
    public init(parameters: ResNet18Parameters, preprocessing: Preprocessing = .rsna, ood: OODSummary? = nil,
                oodLayers: OODEnsemble? = nil) {
        engine = .float(FloatResNet18(parameters))
        oodSummary = ood
        self.oodLayers = oodLayers
        statisticLayers = Set(oodLayers?.layers ?? [])
        let n = parameters.numClasses
        classNames = RSNALabels.defaultClassNames(count: n)
        thresholds = [Float](repeating: 0.5, count: n)
        uncalibratedThresholds = thresholds
        probabilityCalibration = nil
        self.preprocessing = preprocessing
        head = HeadWeights(parameters.head)
    }

    /// Opens `.ichm` (int8) or `.safetensors` (float reference; layout detected unless given).
    public init(path: String, layout: WeightLayout? = nil, threads: Int = 1, kernel: ConvKernel = .native) throws(ScorerError) {
        if path.hasSuffix(".safetensors") {
            do {
                self.init(parameters: try ResNet18Layout.load(try Safetensors.read(path: path), layout: layout))
            } catch {
                throw ScorerError(description: "\(path): \(error)")
            }
        } else {
            do {
                self.init(model: try ModelFile.load(path: path), threads: threads, kernel: kernel)
            } catch {
                throw ScorerError(description: "\(path): \(error.description)")
            }
        }
    }

    /// Applies `calibration` (or none) with `thresholds` on the uncalibrated scale: how `ichd eval` puts a float
    /// reference on the int8 model's scale.
    public mutating func calibrate(_ calibration: ProbabilityCalibration?, thresholds raw: [Float]) {
        precondition(calibration.map { $0.temperatures.count == classNames.count } ?? true && raw.count == classNames.count)
        probabilityCalibration = calibration
        uncalibratedThresholds = raw
        thresholds = raw.enumerated().map { c, t in calibration?.threshold(t, class: c) ?? t }
    }

    /// The probabilities of `logits`, through the calibration when there is one.
    public func probabilities(_ logits: [Float]) -> [Float] {
        guard let c = probabilityCalibration else { return logits.map(sigmoid) }
        return logits.enumerated().map { sigmoid(c.logit($1, class: $0)) }
    }

    /// Scores one normalised input; `heatmapClasses` picks the classes to map (e.g. the positives).
    public func score(_ input: FeatureMap, heatmaps: (SliceScore) -> [Int] = { _ in [] }) -> SliceScore {
        let logits: [Float], features: FeatureMap
        var statistics: [String: ChannelStatistics] = [:]
        switch engine {
        case .int8(let e):
            let out = e.run(input, statistics: statisticLayers)
            (logits, features, statistics) = (out.logits, out.features, out.channelStatistics)
        case .float(let e):
            let wanted = statisticLayers
            let out = e.run(input, observe: wanted.isEmpty ? nil : { name, map in
                if wanted.contains(name) { statistics[name] = map.channelStatistics }
            })
            (logits, features) = (out.logits, out.features)
        }
        let ood: Double?
        if let oodLayers {
            ood = oodLayers.score { statistics[$0.layer]!.vector($0.statistic) }
        } else {
            ood = oodSummary.map { $0.score(Self.pooledFeatures(features)) }
        }
        var result = SliceScore(classNames: classNames, logits: logits, probabilities: probabilities(logits),
                                thresholds: thresholds, heatmaps: [], ood: ood.map(Float.init))
        result.heatmaps = heatmaps(result).map { ClassActivationMap.compute(features: features, head: head, classIndex: $0) }
        return result
    }

    /// layer4's global average per channel: the features the out-of-distribution summary describes (computed
    /// from the dequantised map, the same for both heads; the fastai head's max pool is not part of it).
    public static func pooledFeatures(_ features: FeatureMap) -> [Float] {
        let plane = features.height * features.width
        return features.values.withUnsafeBufferPointer { v in
            (0..<features.channels).map { c in
                var s: Float = 0
                for i in (c * plane)..<((c + 1) * plane) { s += v[i] }
                return s / Float(plane)
            }
        }
    }

    public func score(_ input: ModelInput, heatmaps: (SliceScore) -> [Int] = { _ in [] }) -> SliceScore {
        score(FeatureMap(input), heatmaps: heatmaps)
    }
}
