import Foundation
import ICHDecision
import ICHEngine
import ICHIngest
import ICHModel
import ICHPreprocessing

/// What `ichd eval` reports.
public struct EvaluationReport: Codable, Sendable {
    public struct ClassFigures: Codable, Sendable {
        public var name: String
        public var auc: Double?
        public var threshold: Double
        public var positives: Int
        public var negatives: Int
        public var atThreshold: Metrics.Rates
        /// ROC points [false-positive rate, true-positive rate], for plotting.
        public var roc: [[Double]]?
        /// Expected calibration error of the probabilities (15 equal-width bins).
        public var ece: Double?
        /// The largest |logit| the scorer gave on these slices, and the largest |logit| after the model's
        /// probability calibration (temperature and bounds; the same when it has none).
        public var maxAbsLogit: Double?
        public var maxAbsCalibratedLogit: Double?
        enum CodingKeys: String, CodingKey {
            case name, auc, threshold, positives, negatives, atThreshold = "at_threshold", roc, ece
            case maxAbsLogit = "max_abs_logit", maxAbsCalibratedLogit = "max_abs_calibrated_logit"
        }
    }

    /// int8 against the float reference, per class, over the scored slices: the largest |p_int8 - p_float|
    /// and how the differences are spread (mean, 99th percentile, share of slices within 0.02).
    public struct Agreement: Codable, Sendable {
        public var name: String
        public var maxAbsDifference: Double
        public var meanAbsDifference: Double
        public var p99AbsDifference: Double
        public var withinTwoHundredths: Double
        public var decisionAgreement: Double
        enum CodingKeys: String, CodingKey {
            case name, maxAbsDifference = "max_abs_probability_difference", meanAbsDifference = "mean_abs_probability_difference"
            case p99AbsDifference = "p99_abs_probability_difference", withinTwoHundredths = "share_within_0_02"
            case decisionAgreement = "decision_agreement"
        }

        init(name: String, differences: [Double], agreeing: Int) {
            let sorted = differences.sorted(), n = sorted.count
            self.name = name
            maxAbsDifference = sorted.last ?? 0
            meanAbsDifference = n > 0 ? sorted.reduce(0, +) / Double(n) : 0
            p99AbsDifference = n > 0 ? sorted[min(n - 1, Int((Double(n) * 0.99).rounded(.up)) - 1)] : 0
            withinTwoHundredths = n > 0 ? Double(sorted.filter { $0 <= 0.02 }.count) / Double(n) : 1
            decisionAgreement = n > 0 ? Double(agreeing) / Double(n) : 1
        }
    }

    /// The out-of-distribution scores (`SliceScore.ood`) of the scored slices and series; nil for a model
    /// without a summary.
    public struct OODFigures: Codable, Sendable {
        public var slices: Int
        /// Slices at or above 1 (out of distribution), and their share.
        public var slicesOut: Int
        public var shareOut: Double
        public var median: Double
        public var p99: Double
        public var max: Double
        /// Series (of labelled slices) whose series score (the median of their slices') reaches 1.
        public var series: Int
        public var seriesOut: Int
        /// Of those out-of-distribution series, how many raised the alarm (their verdicts are not evidence).
        public var seriesOutAlarmed: Int
        enum CodingKeys: String, CodingKey {
            case slices, slicesOut = "slices_out", shareOut = "share_out", median, p99, max, series, seriesOut = "series_out"
            case seriesOutAlarmed = "series_out_alarmed"
        }
    }

    public var model: String
    public var engine: String
    public var files: Int
    public var slicesScored: Int
    /// Scored slices with labels (the metrics are over these).
    public var slicesLabelled: Int
    /// Scored slices without any label row: counted, not used.
    public var slicesUnlabelled: Int
    public var slicesSkipped: Int
    /// Rejection code -> count.
    public var rejected: [String: Int]
    /// Label rows naming slices that were not found among the scored, skipped or rejected files.
    public var labelsWithoutSlice: Int
    public var duplicateLabelRows: Int
    public var malformedLabelRows: Int
    public var classes: [ClassFigures]
    /// The RSNA metric (weight 2 for any); nil unless the model's classes are the RSNA six.
    public var weightedLogLoss: Double?
    /// Series-level "any": a series is positive when a slice is labelled any, called positive when a slice's
    /// any probability reaches the threshold.
    public var series: Metrics.Rates?
    public var seriesCount: Int
    /// int8 against the float reference, when one was given.
    public var reference: [Agreement]?
    public var ood: OODFigures?

    enum CodingKeys: String, CodingKey {
        case model, engine, files, slicesScored = "slices_scored", slicesLabelled = "slices_labelled"
        case slicesUnlabelled = "slices_unlabelled", slicesSkipped = "slices_skipped", rejected
        case labelsWithoutSlice = "labels_without_slice", duplicateLabelRows = "duplicate_label_rows"
        case malformedLabelRows = "malformed_label_rows", classes, weightedLogLoss = "weighted_log_loss", series
        case seriesCount = "series_count", reference, ood
    }
}

/// Scores every slice of a folder through the real ingest, preprocessing and engine, and compares with labels.
public enum Evaluator {
    public static func run(scorer: SliceScorer, modelName: String, reference: SliceScorer?, images: String,
                           labels: RSNALabelFile, log: (String) -> Void = { _ in }) -> EvaluationReport {
        let files = SliceFile.files(inFolder: images)
        let pipeline = SlicePipeline(preprocessing: scorer.preprocessing)
        let classes = scorer.classNames
        var probabilities: [[Double]] = [], truth: [[Bool]] = []
        var findings: [String: SeriesFinding] = [:], seriesTruth: [String: Bool] = [:]
        let alertClass = SeriesFinding(classNames: classes, thresholds: scorer.thresholds).alertClass
        var referenceDiffs = [[Double]](repeating: [], count: classes.count), referenceAgree = [Int](repeating: 0, count: classes.count)
        var scored = 0, unlabelled = 0, skipped = 0
        var rejected: [String: Int] = [:]
        var found = Set<String>()
        var oodScores: [Double] = []
        var maxLogit = [Double](repeating: 0, count: classes.count), maxCalibrated = [Double](repeating: 0, count: classes.count)
        for (n, file) in files.enumerated() {
            pipeline.process(path: file) { result in
                let key = result.labelKey
                switch result.outcome {
                case .rejected(let r):
                    rejected[r.code, default: 0] += 1
                    found.insert(key)
                case .skipped:
                    skipped += 1
                    found.insert(key)
                case .ready(_, let input?):
                    scored += 1
                    found.insert(key)
                    let score = scorer.score(input)
                    if let ood = score.ood { oodScores.append(Double(ood)) }
                    if let reference {
                        let p = reference.score(input).probabilities
                        for c in classes.indices {
                            referenceDiffs[c].append(Double(abs(p[c] - score.probabilities[c])))
                            if (p[c] >= scorer.thresholds[c]) == (score.probabilities[c] >= scorer.thresholds[c]) { referenceAgree[c] += 1 }
                        }
                    }
                    guard let row = labels.labels[key] else {
                        unlabelled += 1
                        return
                    }
                    probabilities.append(score.probabilities.map(Double.init))
                    for c in classes.indices {
                        maxLogit[c] = max(maxLogit[c], Double(abs(score.logits[c])))
                        let calibrated = scorer.probabilityCalibration.map { $0.logit(score.logits[c], class: c) } ?? score.logits[c]
                        maxCalibrated[c] = max(maxCalibrated[c], Double(abs(calibrated)))
                    }
                    truth.append(classes.map { row[$0] ?? false })
                    if let series = result.header?.seriesInstanceUID {
                        findings[series, default: SeriesFinding(classNames: classes, thresholds: scorer.thresholds)].add(score, slice: n)
                        seriesTruth[series] = (seriesTruth[series] ?? false) || truth[truth.count - 1][alertClass]
                    }
                case .ready(_, nil):
                    break
                }
            }
            if (n + 1) % 100 == 0 { log("  \(n + 1)/\(files.count) files") }
        }
        let figures = classes.indices.map { c in
            let s = probabilities.map { $0[c] }, y = truth.map { $0[c] }
            var f = EvaluationReport.ClassFigures(name: classes[c], auc: Metrics.auc(scores: s, labels: y),
                                                  threshold: Double(scorer.thresholds[c]), positives: y.filter { $0 }.count,
                                                  negatives: y.filter { !$0 }.count,
                                                  atThreshold: Metrics.rates(scores: s, labels: y, threshold: Double(scorer.thresholds[c])),
                                                  roc: Metrics.roc(scores: s, labels: y))
            if !s.isEmpty {
                f.ece = ProbabilityCalibration.expectedCalibrationError(probabilities: s, labels: y)
                f.maxAbsLogit = maxLogit[c]
                f.maxAbsCalibratedLogit = maxCalibrated[c]
            }
            return f
        }
        var loss: Double? = nil
        if classes == RSNALabels.subtypes {
            loss = Metrics.weightedLogLoss(probabilities: probabilities, labels: truth, weights: [2, 1, 1, 1, 1, 1])
        }
        // Series figures through the appliance's own series rule (ICHDecision.SeriesFinding).
        var seriesRates: Metrics.Rates? = nil
        if !findings.isEmpty {
            let keys = findings.keys.sorted()
            seriesRates = Metrics.rates(scores: keys.map { Double(findings[$0]!.maxProbabilities[alertClass]) },
                                        labels: keys.map { seriesTruth[$0]! }, threshold: Double(scorer.thresholds[alertClass]))
        }
        let seriesCount = findings.count
        let referenceFigures = reference.map { _ in
            classes.indices.map { EvaluationReport.Agreement(name: classes[$0], differences: referenceDiffs[$0], agreeing: referenceAgree[$0]) }
        }
        var ood: EvaluationReport.OODFigures? = nil
        if !oodScores.isEmpty {
            let sorted = oodScores.sorted(), n = sorted.count
            let withOOD = findings.values.filter { $0.ood != nil }, out = withOOD.filter(\.isOutOfDistribution)
            ood = .init(slices: n, slicesOut: sorted.filter { $0 >= 1 }.count, shareOut: Double(sorted.filter { $0 >= 1 }.count) / Double(n),
                        median: sorted[n / 2], p99: sorted[min(n - 1, Int((Double(n) * 0.99).rounded(.up)) - 1)], max: sorted[n - 1],
                        series: withOOD.count, seriesOut: out.count, seriesOutAlarmed: out.filter(\.isUrgent).count)
        }
        var report = EvaluationReport(
            model: modelName, engine: scorer.engineName, files: files.count, slicesScored: scored, slicesLabelled: probabilities.count,
            slicesUnlabelled: unlabelled, slicesSkipped: skipped, rejected: rejected,
            labelsWithoutSlice: Set(labels.labels.keys).subtracting(found).count, duplicateLabelRows: labels.duplicates.count,
            malformedLabelRows: labels.malformed.count, classes: figures, weightedLogLoss: loss, series: seriesRates,
            seriesCount: seriesCount, reference: referenceFigures)
        report.ood = ood
        return report
    }
}
