import Foundation
import ICHEngine
import ICHIngest
import ICHPreprocessing

/// One slice of an ad-hoc scoring request (a file uploaded to the console) as people read it: what the
/// pipeline made of it (scored, skipped and why, refused and why), the scores, the preview the model saw and
/// the heatmaps of its positive classes. Nothing of it is journalled, archived or alarmed: an upload is a
/// question, not an intake. The daemon's scorer threads and `ichd serve`'s own scorer build it the same way.
public struct SliceReport: Sendable {
    public enum Outcome: Sendable {
        case scored(SliceScore)
        /// Too little brain to score (the assessment's reason).
        case skipped(String)
        /// Not scorable at all: the ingest refusal's code and message.
        case rejected(code: String, message: String)
    }

    /// The uploaded file's name (as the client sent it, for display only; never a path on this machine).
    public var file: String
    public var frame: Int?
    public var outcome: Outcome
    /// Where the slice lies in its series (for the adjacency rule), as the daemon orders slices.
    public var sortKey: Double
    public var instance: Int?
    /// Identifying values, shown only where the console is configured to (`show_identifiers`).
    public var identifiers: [String: String]
    /// The three windows the model saw, one per RGB channel (nil when not prepared).
    public var preview: Image8?
    /// From the request's arrival at the scorer to this slice's score.
    public var milliseconds: Double

    public init(file: String, frame: Int?, outcome: Outcome, sortKey: Double, instance: Int?, identifiers: [String: String] = [:],
                preview: Image8? = nil, milliseconds: Double = 0) {
        self.file = file
        self.frame = frame
        self.outcome = outcome
        self.sortKey = sortKey
        self.instance = instance
        self.identifiers = identifiers
        self.preview = preview
        self.milliseconds = milliseconds
    }

    public var score: SliceScore? {
        if case .scored(let s) = outcome { return s }
        return nil
    }

    /// A refused file (nothing could be read from it).
    public static func refused(file: String, _ rejection: IngestRejection) -> SliceReport {
        SliceReport(file: file, frame: nil, outcome: .rejected(code: rejection.code, message: rejection.message), sortKey: 0, instance: nil)
    }

    /// The report of one pipeline result before scoring, and the model input to score (nil: nothing to score).
    public static func draft(_ result: SliceResult, file: String, arrival: Int, preprocessing: Preprocessing) -> (SliceReport, ModelInput?) {
        var ids: [String: String] = [:]
        if let h = result.header {
            ids["study_uid"] = h.studyInstanceUID
            ids["series_uid"] = h.seriesInstanceUID
            ids["sop_uid"] = h.sopInstanceUID
            if let a = h.accessionNumber?.value, !a.isEmpty { ids["accession"] = a }
        }
        var report = SliceReport(file: file, frame: result.frame, outcome: .skipped(""), sortKey: SeriesEvidence.key(of: result, arrival: arrival),
                                 instance: result.header?.instanceNumber, identifiers: ids)
        switch result.outcome {
        case .rejected(let r):
            report.outcome = .rejected(code: r.code, message: r.message)
            return (report, nil)
        case .skipped(let assessment):
            report.outcome = .skipped(assessment.reason ?? "not scored")
            return (report, nil)
        case .ready(_, let input):
            report.preview = input?.previewImage(spec: preprocessing)
            return (report, input)
        }
    }

    /// The classes whose heatmaps a person wants: the positive ones, or the most probable when none is.
    public static func heatmapClasses(_ score: SliceScore) -> [Int] {
        let positives = score.positives
        guard positives.isEmpty else { return positives }
        return score.probabilities.indices.max { score.probabilities[$0] < score.probabilities[$1] }.map { [$0] } ?? []
    }

    /// The series decision over several slices by the appliance's own rule (k adjacent slices at or above
    /// the alarm threshold), nil when nothing was scored.
    public static func seriesDecision(_ reports: [SliceReport], adjacentSlices: Int) -> SeriesEvidence? {
        guard let first = reports.lazy.compactMap(\.score).first else { return nil }
        var evidence = SeriesEvidence(classNames: first.classNames, thresholds: first.thresholds, adjacentSlices: adjacentSlices)
        for r in reports {
            if let s = r.score { _ = evidence.add(s, key: r.sortKey, instance: r.instance) } else if case .skipped = r.outcome {
                evidence.addSkipped(key: r.sortKey, instance: r.instance)
            }
        }
        return evidence
    }
}

/// Scores files one after another with an engine of its own, as `ichd serve` does (no daemon, no drop folder).
public struct SliceReporter: Sendable {
    public let scorer: SliceScorer

    public init(scorer: SliceScorer) { self.scorer = scorer }

    /// Every frame of the file at `path`, shown as `name`; `heatmaps`: with the heatmaps people look at.
    public func report(path: String, name: String, heatmaps: Bool = true) -> [SliceReport] {
        let started = Date()
        let opened: SliceFile
        do {
            opened = try SliceFile.open(path: path)
        } catch {
            return [.refused(file: name, error)]
        }
        var reports: [SliceReport] = []
        SlicePipeline(preprocessing: scorer.preprocessing).process(opened, path: path) { result in
            var (report, input) = SliceReport.draft(result, file: name, arrival: reports.count, preprocessing: scorer.preprocessing)
            if let input { report.outcome = .scored(scorer.score(input, heatmaps: heatmaps ? SliceReport.heatmapClasses : { _ in [] })) }
            report.milliseconds = Date().timeIntervalSince(started) * 1000
            reports.append(report)
        }
        return reports
    }
}
