import Foundation

/// Classification figures computed the usual way, so that numbers compare with published ones.
public enum Metrics {
    /// Area under the ROC curve (Mann-Whitney U, ties counted half); nil without both classes.
    public static func auc(scores: [Double], labels: [Bool]) -> Double? {
        let positives = labels.filter { $0 }.count, negatives = labels.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1  // average rank of the tie group, 1-based
            for k in i...j where labels[order[k]] { rankSum += rank }
            i = j + 1
        }
        return (rankSum - Double(positives * (positives + 1)) / 2) / Double(positives * negatives)
    }

    /// The RSNA 2019 metric: per slice, the weighted mean over classes of the binary log loss (weight 2 for
    /// `any`, 1 for the subtypes), averaged over slices; probabilities clipped to [1e-15, 1 - 1e-15].
    public static func weightedLogLoss(probabilities: [[Double]], labels: [[Bool]], weights: [Double]) -> Double {
        guard !probabilities.isEmpty else { return .nan }
        let totalWeight = weights.reduce(0, +)
        var sum = 0.0
        for (p, y) in zip(probabilities, labels) {
            var slice = 0.0
            for c in weights.indices {
                let q = min(max(p[c], 1e-15), 1 - 1e-15)
                slice -= weights[c] * (y[c] ? log(q) : log(1 - q))
            }
            sum += slice / totalWeight
        }
        return sum / Double(probabilities.count)
    }

    /// The ROC curve as (false-positive rate, true-positive rate) points from (0, 0) to (1, 1), one per distinct
    /// score, thinned to at most `maxPoints` (kept evenly along the curve, ends included); nil without both classes.
    public static func roc(scores: [Double], labels: [Bool], maxPoints: Int = 101) -> [[Double]]? {
        let positives = labels.filter { $0 }.count, negatives = labels.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var points: [[Double]] = [[0, 0]]
        var tp = 0, fp = 0, i = 0
        while i < order.count {
            let s = scores[order[i]]
            while i < order.count && scores[order[i]] == s {
                if labels[order[i]] { tp += 1 } else { fp += 1 }
                i += 1
            }
            points.append([Double(fp) / Double(negatives), Double(tp) / Double(positives)])
        }
        guard points.count > maxPoints, maxPoints >= 2 else { return points }
        return (0..<maxPoints).map { points[$0 * (points.count - 1) / (maxPoints - 1)] }
    }

    public struct Rates: Codable, Sendable, Equatable {
        public var sensitivity: Double?
        public var specificity: Double?
        public var truePositives, falseNegatives, trueNegatives, falsePositives: Int

        enum CodingKeys: String, CodingKey {
            case sensitivity, specificity, truePositives = "true_positives", falseNegatives = "false_negatives"
            case trueNegatives = "true_negatives", falsePositives = "false_positives"
        }
    }

    /// Sensitivity and specificity of "score >= threshold".
    public static func rates(scores: [Double], labels: [Bool], threshold: Double) -> Rates {
        var tp = 0, fn = 0, tn = 0, fp = 0
        for (s, y) in zip(scores, labels) {
            switch (y, s >= threshold) {
            case (true, true): tp += 1
            case (true, false): fn += 1
            case (false, false): tn += 1
            case (false, true): fp += 1
            }
        }
        return Rates(sensitivity: tp + fn > 0 ? Double(tp) / Double(tp + fn) : nil,
                     specificity: tn + fp > 0 ? Double(tn) / Double(tn + fp) : nil,
                     truePositives: tp, falseNegatives: fn, trueNegatives: tn, falsePositives: fp)
    }
}
