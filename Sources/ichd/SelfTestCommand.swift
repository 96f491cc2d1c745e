import ArgumentParser
import Foundation
import ICHDecision
import ICHEngine
import ICHEvaluation

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Commissioning self-test: a known-positive synthetic series must raise the alarm, a known-negative one must not.",
        discussion: """
            Writes both series as DICOM (through DCMTK) under --work and runs them through the appliance's own \
            ingest, preprocessing, engine and series rule with the model's thresholds. Exit status 0 when both \
            behave, 1 otherwise. It proves the installed chain works; it is not a measure of clinical accuracy \
            (the phantoms are synthetic).
            """)

    @Option(help: "Model (.ichm).")
    var model = "models/ichd-phantom-resnet18.ichm"

    @Option(help: "Folder for the two series (kept for inspection).")
    var work = "selftest-out"

    @Option(help: "Engine threads.")
    var threads = 1

    @Option(name: .customLong("adjacent-slices"), help: "The daemon's rule: this many adjacent slices at or over the alarm threshold (decision.adjacent_slices).")
    var adjacentSlices = 2

    func run() throws {
        let scorer: SliceScorer
        do {
            scorer = try SliceScorer(path: model, threads: threads)
        } catch {
            printError("\(error)")
            throw rejectedExit
        }
        let outcome: CommissioningCheck.Outcome
        do {
            outcome = try CommissioningCheck.run(scorer: scorer, workFolder: work, adjacentSlices: max(1, adjacentSlices))
        } catch {
            printError("selftest: \(error.description)")
            throw rejectedExit
        }
        for (name, series) in [("known-positive", outcome.positive), ("known-negative", outcome.negative)] {
            let f = series.finding, a = f.alertClass
            let peak = String(format: "%.3f", f.maxProbabilities[a]), threshold = String(format: "%.3f", f.thresholds[a])
            let e = series.evidence
            let verdict = e.isUrgent
                ? "ALERT (\(f.classNames[a]) \(peak) >= \(threshold); \(e.adjacentSlices) adjacent slices completed at slice \(e.completedBy?.instance ?? 0))"
                : f.isUrgent ? "no alert (\(f.classNames[a]) \(peak) >= \(threshold) on slice \(f.strongestSlice[a] ?? 0), but fewer than \(e.adjacentSlices) adjacent slices)"
                             : "no alert (highest \(f.classNames[a]) \(peak) < \(threshold))"
            print("\(series.passed ? "PASS" : "FAIL") \(name): \(verdict); \(f.slicesScored) slices scored, \(series.slicesSkipped) skipped"
                  + (series.drawnSubtypes.isEmpty ? "" : "; drawn: \(series.drawnSubtypes.joined(separator: ", "))")
                  + (f.positiveClasses.isEmpty ? "" : "; positive classes: \(f.positiveClasses.joined(separator: ", "))")
                  + (f.ood.map { "; ood \(String(format: "%.2f", $0))" + (f.isOutOfDistribution ? " (OUT OF DISTRIBUTION)" : "") } ?? ""))
            for problem in series.slicesRejected { printError("  rejected \(problem)") }
        }
        print(outcome.passed ? "selftest passed: the chain raises the alarm for the known-positive series only (\(work))"
                             : "selftest FAILED: do not put this appliance into service (\(work))")
        if !outcome.passed { throw rejectedExit }
    }
}
