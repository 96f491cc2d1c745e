import ArgumentParser
import Foundation
import ICHEngine
import ICHEvaluation
import ICHIngest

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model on labelled slices (RSNA-format labels): AUC, weighted log loss, rates, series figures.",
        discussion: """
            Every DICOM or JPEG slice under --images goes through the appliance's own ingest, preprocessing and \
            engine. Labels: CSV rows ID_<SOPInstanceUID>_<subtype>,0|1 (JPEG slices: ID_<file name>). Unlabelled \
            slices, labels without a slice, duplicate rows, skipped and rejected slices are counted and reported.
            """)

    @Option(help: "Model: .ichm (int8) or .safetensors (float32).")
    var model: String

    @Option(help: "Folder of slices (searched recursively).")
    var images: String

    @Option(help: "RSNA-format label CSV.")
    var labels: String

    @Option(help: "Float reference weights (.safetensors): adds int8-vs-float agreement.")
    var reference: String?

    @Option(help: "Engine threads.")
    var threads = 1

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: "Draw the ROC curves per class, with the operating points, to this PNG file.")
    var plot: String?

    func run() throws {
        let scorer: SliceScorer, referenceScorer: SliceScorer?
        let labelFile: RSNALabelFile
        do {
            scorer = try SliceScorer(path: model, threads: threads)
            var r = try reference.map { try SliceScorer(path: $0) }
            // The float reference on the int8 model's probability scale (its calibration and thresholds), so the
            // two are compared like for like.
            r?.calibrate(scorer.probabilityCalibration, thresholds: scorer.uncalibratedThresholds)
            referenceScorer = r
        } catch {
            printError("\(error)")
            throw rejectedExit
        }
        do {
            labelFile = try RSNALabelFile(path: labels)
        } catch {
            printError("cannot read \(labels): \(error.localizedDescription)")
            throw rejectedExit
        }
        let report = Evaluator.run(scorer: scorer, modelName: model, reference: referenceScorer, images: images, labels: labelFile) { printError($0) }
        if let plot {
            let title = "ROC " + (model as NSString).lastPathComponent + " (" + scorer.engineName + ")"
            try writeAtomically(try PNGEncoder.encode(ROCPlot.render(report, title: title)), to: plot)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("\(report.engine) \(model): \(report.files) files, \(report.slicesScored) slices scored (\(report.slicesLabelled) labelled, "
              + "\(report.slicesUnlabelled) unlabelled), \(report.slicesSkipped) skipped, "
              + "\(report.rejected.values.reduce(0, +)) rejected \(report.rejected.isEmpty ? "" : "\(report.rejected.sorted { $0.key < $1.key })")")
        print("labels: \(report.labelsWithoutSlice) without a slice, \(report.duplicateLabelRows) duplicate rows, \(report.malformedLabelRows) malformed rows")
        func f(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "  -   " }
        print("class               AUC     threshold  sensitivity  specificity  positives/negatives  ECE     max |logit| (calibrated)")
        for c in report.classes {
            let counts: String = "\(c.positives)/\(c.negatives)".padding(toLength: 20, withPad: " ", startingAt: 0)
            let logit: String = c.maxAbsLogit.map { String(format: "%.1f", $0) } ?? "-"
            let calibrated: String = c.maxAbsCalibratedLogit.map { String(format: "%.1f", $0) } ?? "-"
            let head: String = "  \(c.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(f(c.auc))  \(String(format: "%.2f", c.threshold))       "
            print(head + "\(f(c.atThreshold.sensitivity))       \(f(c.atThreshold.specificity))       \(counts) \(f(c.ece))  \(logit) (\(calibrated))")
        }
        if let c = scorer.probabilityCalibration {
            print("probabilities: temperature-calibrated on \(c.samples) validation slices (T " + c.temperatures.map { String(format: "%.2f", $0) }.joined(separator: ", ") + ")")
        }
        if let loss = report.weightedLogLoss { print("weighted log loss (RSNA, any x2): \(String(format: "%.4f", loss))") }
        if let s = report.series {
            print("series (any): \(report.seriesCount) series, sensitivity \(f(s.sensitivity)), specificity \(f(s.specificity))")
        }
        if let o = report.ood {
            print("out of distribution (ood >= 1): \(o.slicesOut) of \(o.slices) slices (\(String(format: "%.2f%%", 100 * o.shareOut))), "
                  + "ood median \(String(format: "%.2f", o.median)), 99th percentile \(String(format: "%.2f", o.p99)), max \(String(format: "%.2f", o.max)); "
                  + "\(o.seriesOut) of \(o.series) series (\(o.seriesOutAlarmed) of them alarmed: such verdicts are not evidence)")
        } else {
            print("out of distribution: - (the model carries no out-of-distribution summary)")
        }
        for a in report.reference ?? [] {
            print("  int8 vs float \(a.name): max |dp| \(String(format: "%.4f", a.maxAbsDifference)), 99th percentile "
                  + "\(String(format: "%.4f", a.p99AbsDifference)), mean \(String(format: "%.5f", a.meanAbsDifference)), "
                  + "within 0.02 \(String(format: "%.2f%%", 100 * a.withinTwoHundredths)), decisions agree \(String(format: "%.2f%%", 100 * a.decisionAgreement))")
        }
    }
}
