import Foundation
import ICHDecision
import ICHEngine
import ICHIngest
import ICHPhantom
import ICHPreprocessing

/// The appliance's commissioning self-test: a known-positive synthetic series must raise the alarm and a
/// known-negative one must not, each written as DICOM through DCMTK and read back through the real ingest,
/// preprocessing, engine and series rule, exactly as slices from the scanner would be. It proves the chain
/// (files, decode, preprocessing, model, thresholds) on the box as installed; it says nothing about accuracy
/// on patients.
public enum CommissioningCheck {
    /// Series seeds kept apart from every seed the shipped model's training, validation and test used
    /// (100000..., 200000..., 300000...; see the Makefile's model target).
    public static let positiveSeed: UInt64 = 900_001
    public static let negativeSeed: UInt64 = 900_002

    public struct SeriesOutcome: Sendable {
        public var expectedUrgent: Bool
        /// The daemon's own rule (k adjacent slices at or over the alarm threshold).
        public var evidence: SeriesEvidence
        public var finding: SeriesFinding { evidence.finding }
        /// Subtypes drawn into the series (empty for the negative one).
        public var drawnSubtypes: [String]
        public var slicesSkipped: Int
        public var slicesRejected: [String]
        public var passed: Bool { slicesRejected.isEmpty && finding.slicesScored > 0 && evidence.isUrgent == expectedUrgent }
    }

    public struct Outcome: Sendable {
        public var positive: SeriesOutcome
        public var negative: SeriesOutcome
        public var passed: Bool { positive.passed && negative.passed }
    }

    /// Writes the two series under `workFolder` (left there for inspection) and scores them under the
    /// daemon's rule with `adjacentSlices` (its `decision.adjacent_slices`).
    public static func run(scorer: SliceScorer, workFolder: String, adjacentSlices: Int = 2) throws(DicomWriter.WriteError) -> Outcome {
        func check(seed: UInt64, positive: Bool, name: String) throws(DicomWriter.WriteError) -> SeriesOutcome {
            let series = PhantomSeries(seed: seed, positive: positive)
            let folder = (workFolder as NSString).appendingPathComponent(name)
            try? FileManager.default.removeItem(atPath: folder)
            try series.write(to: folder)
            let pipeline = SlicePipeline(preprocessing: scorer.preprocessing)
            var arrival = 0
            func key(_ r: SliceResult) -> Double {
                arrival += 1
                return SeriesEvidence.key(of: r, arrival: arrival)
            }
            var outcome = SeriesOutcome(expectedUrgent: positive,
                                        evidence: SeriesEvidence(classNames: scorer.classNames, thresholds: scorer.thresholds,
                                                                 adjacentSlices: adjacentSlices),
                                        drawnSubtypes: series.subtypes.map(\.rawValue).sorted(), slicesSkipped: 0, slicesRejected: [])
            for file in SliceFile.files(inFolder: folder) {
                pipeline.process(path: file) { result in
                    switch result.outcome {
                    case .rejected(let r): outcome.slicesRejected.append("\((file as NSString).lastPathComponent): \(r.message)")
                    case .skipped:
                        outcome.slicesSkipped += 1
                        outcome.evidence.addSkipped(key: key(result), instance: result.header?.instanceNumber)
                    case .ready(_, let input?):
                        outcome.evidence.add(scorer.score(input), key: key(result), instance: result.header?.instanceNumber)
                    case .ready(_, nil): break
                    }
                }
            }
            return outcome
        }
        return Outcome(positive: try check(seed: positiveSeed, positive: true, name: "known-positive"),
                       negative: try check(seed: negativeSeed, positive: false, name: "known-negative"))
    }
}
