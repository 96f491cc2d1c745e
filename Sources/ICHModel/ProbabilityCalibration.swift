import Foundation

/// Temperature calibration of the probabilities (Guo et al. 2017, "On calibration of modern neural networks"),
/// per class, fitted on validation slices, with bounds on the calibrated logit: `p = sigmoid(clamp(logit / T,
/// logit_min, logit_max))`. The thresholds the model file states belong to the uncalibrated probabilities; the scorer maps them
/// the same way (`threshold(_:)`), so every decision is what it was without calibration.
///
/// The bounds: the validation set is the only evidence of how often the model is right, and n slices cannot
/// support odds beyond about n to 1 (a probability of 1 - 1/(n + 1) already says "never wrong on these n").
/// `logit_max` is ln(n + 1) for the class's n positive validation slices, `logit_min` -ln(m + 1) for its m
/// negative ones.
public struct ProbabilityCalibration: Codable, Sendable, Equatable {
    /// "temperature"
    public var method: String
    /// Per class, in output order.
    public var temperatures: [Float]
    public var logitMax: [Float]
    public var logitMin: [Float]
    public var samples: Int
    public var source: String
    /// Per class, on the fitting slices: expected calibration error (15 equal-width bins) and mean binary
    /// cross-entropy, before and after.
    public var eceBefore: [Double]
    public var eceAfter: [Double]
    public var lossBefore: [Double]
    public var lossAfter: [Double]

    public init(method: String = "temperature", temperatures: [Float], logitMax: [Float], logitMin: [Float], samples: Int,
                source: String, eceBefore: [Double], eceAfter: [Double], lossBefore: [Double], lossAfter: [Double]) {
        self.method = method
        self.temperatures = temperatures
        self.logitMax = logitMax
        self.logitMin = logitMin
        self.samples = samples
        self.source = source
        self.eceBefore = eceBefore
        self.eceAfter = eceAfter
        self.lossBefore = lossBefore
        self.lossAfter = lossAfter
    }

    enum CodingKeys: String, CodingKey {
        case method, temperatures, logitMax = "logit_max", logitMin = "logit_min", samples, source
        case eceBefore = "ece_before", eceAfter = "ece_after", lossBefore = "loss_before", lossAfter = "loss_after"
    }

    /// Why it cannot be used with `classes` outputs, or nil.
    public func problem(classes: Int) -> String? {
        guard method == "temperature" else { return "method \(method); this ichd knows temperature" }
        guard temperatures.count == classes, logitMax.count == classes, logitMin.count == classes else {
            return "one temperature and two bounds per class (\(classes))"
        }
        guard temperatures.allSatisfy({ $0 > 0 && $0.isFinite }), logitMax.allSatisfy({ $0 > 0 && !$0.isNaN }),
              logitMin.allSatisfy({ $0 < 0 && !$0.isNaN }) else {
            return "temperatures must be positive, logit_max positive and logit_min negative"
        }
        return nil
    }

    /// The calibrated logit of class `c`.
    public func logit(_ raw: Float, class c: Int) -> Float {
        let v = raw / temperatures[c]
        return v.isNaN ? v : min(logitMax[c], max(logitMin[c], v))
    }

    /// An uncalibrated probability threshold of class `c` on the calibrated scale (the bounds do not apply: the
    /// model file is refused when a threshold lies beyond them, where it would change decisions).
    public func threshold(_ p: Float, class c: Int) -> Float {
        guard p > 0 && p < 1 else { return p }
        let z = log(p / (1 - p)) / temperatures[c]
        return 1 / (1 + exp(-z))
    }

    /// Whether threshold `p` of class `c` (uncalibrated) lies strictly within the bounds once calibrated.
    public func thresholdWithinBounds(_ p: Float, class c: Int) -> Bool {
        guard p > 0 && p < 1 else { return true }
        let z = log(p / (1 - p)) / temperatures[c]
        return z > logitMin[c] && z < logitMax[c]
    }

    /// Expected calibration error: the mean over `bins` equal-width probability bins of |mean predicted - share
    /// positive|, weighted by the bin's share of slices (Naeini et al. 2015; Guo et al. 2017 use 15 bins).
    public static func expectedCalibrationError(probabilities: [Double], labels: [Bool], bins: Int = 15) -> Double {
        guard !probabilities.isEmpty else { return 0 }
        var count = [Int](repeating: 0, count: bins), sumP = [Double](repeating: 0, count: bins), sumY = [Double](repeating: 0, count: bins)
        for (p, y) in zip(probabilities, labels) {
            let b = min(bins - 1, max(0, Int(p * Double(bins))))
            count[b] += 1
            sumP[b] += p
            sumY[b] += y ? 1 : 0
        }
        var e = 0.0
        for b in 0..<bins where count[b] > 0 { e += abs(sumP[b] - sumY[b]) }
        return e / Double(probabilities.count)
    }
}
