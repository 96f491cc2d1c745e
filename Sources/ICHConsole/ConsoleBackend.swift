import Foundation
import ICHAlerts
import ICHDaemon
import ICHDecision
import ICHEngine

/// What the console shows on its status page and `GET /api/status`: one snapshot, taken per request.
public struct ConsoleStatus: Sendable {
    /// "daemon" (`ichd run` with `[console] enabled`) or "serve" (`ichd serve`: scoring only).
    public var mode: String
    public var health: HealthState
    public var faults: [String: String]
    /// Nil where there is no lamp (`ichd serve`).
    public var lamp: LampState?
    public var modelID: String
    public var modelSHA: String
    public var engine: String
    public var classNames: [String]
    public var thresholds: [Float]
    public var adjacentSlices: Int
    public var queue: Int
    public var p50Ms: Int?
    public var p95Ms: Int?
    public var p99Ms: Int?
    public var overBudget: Int
    public var budgetMs: Int
    public var slices: Int
    public var recentResults: [Daemon.SeriesResultRecord]
    public var pendingAlerts: [AlertNotice]
}

/// Where the console's answers come from: the running daemon, or a scorer of its own.
public protocol ConsoleBackend: Sendable {
    func status() -> ConsoleStatus
    /// Scores uploaded files (written by the console to its private folder); every slice's report, with the
    /// heatmaps of its positive classes when `heatmaps`.
    func score(_ files: [(path: String, name: String)], heatmaps: Bool) async -> [SliceReport]
    /// Acknowledges a pending alert through the appliance's one acknowledge path; false when it is not pending.
    func acknowledge(_ id: String) -> Bool
    /// A private folder for uploads, never the drop folder or the archive.
    var uploadParent: String { get }
    var metrics: ApplianceMetrics { get }
}

/// The console of `ichd run`: status from the daemon, uploads scored by the daemon's engines in their turn
/// (`Daemon.scoreUploads`), acknowledgements through the alert layer (CLEAR `by=web` follows on the line).
public struct DaemonConsoleBackend: ConsoleBackend {
    public let daemon: Daemon
    public let uploadParent: String

    public init(daemon: Daemon, stateFolder: String) {
        self.daemon = daemon
        uploadParent = stateFolder + "/console-uploads"
    }

    public var metrics: ApplianceMetrics { daemon.metrics }

    public func status() -> ConsoleStatus {
        let s = daemon.status(), settings = daemon.currentSettings
        // The alert layer's faults (GPIO, SERIAL) carry no text of their own here; the daemon's do.
        var faults = s.faults
        for f in daemon.alerts.activeFaults where faults[f.rawValue] == nil { faults[f.rawValue] = "alert layer" }
        return ConsoleStatus(mode: "daemon", health: s.health, faults: faults,
                             lamp: daemon.alerts.lampState, modelID: settings.modelID, modelSHA: settings.modelSHA, engine: settings.engine,
                             classNames: settings.classNames, thresholds: settings.thresholds, adjacentSlices: settings.adjacentSlices,
                             queue: s.pipeline.queue, p50Ms: s.pipeline.p50Ms, p95Ms: s.pipeline.p95Ms, p99Ms: s.pipeline.p99Ms,
                             overBudget: s.pipeline.overBudget, budgetMs: settings.sliceBudgetMs, slices: s.slices,
                             recentResults: daemon.recentSeriesResults, pendingAlerts: daemon.alerts.pending)
    }

    public func score(_ files: [(path: String, name: String)], heatmaps: Bool) async -> [SliceReport] {
        await withCheckedContinuation { continuation in
            daemon.scoreUploads(files, heatmaps: heatmaps) { continuation.resume(returning: $0) }
        }
    }

    public func acknowledge(_ id: String) -> Bool { daemon.alerts.acknowledge(id: id, by: .web) }
}

/// The console of `ichd serve`: a model and nothing else (no drop folder, lamp, serial line or journal).
/// Uploads are scored one request at a time on a thread of its own, never on the server's event loops.
public final class StandaloneConsoleBackend: ConsoleBackend, @unchecked Sendable {
    let reporter: SliceReporter
    let modelID: String
    let modelSHA: String
    let adjacentSlices: Int
    let budgetMs: Int
    public let uploadParent: String
    public let metrics: ApplianceMetrics
    private let queue = DispatchQueue(label: "ichd-serve-scorer")
    private let lock = NSLock()
    private var latency: LatencyTracker
    private var waiting = 0

    public init(scorer: SliceScorer, modelID: String, modelSHA: String, adjacentSlices: Int = 2, budgetMs: Int = 1000,
                uploadParent: String, metrics: ApplianceMetrics) {
        reporter = SliceReporter(scorer: scorer)
        self.modelID = modelID
        self.modelSHA = modelSHA
        self.adjacentSlices = adjacentSlices
        self.budgetMs = budgetMs
        self.uploadParent = uploadParent
        self.metrics = metrics
        latency = LatencyTracker(budgetMs: budgetMs)
    }

    public func status() -> ConsoleStatus {
        let (p, count, over, queued) = lock.withLock { (latency.percentiles([50, 95, 99]).map { $0.map { Int($0.rounded()) } }, latency.count, latency.overBudget, waiting) }
        let scorer = reporter.scorer
        return ConsoleStatus(mode: "serve", health: .ok, faults: [:], lamp: nil, modelID: modelID, modelSHA: modelSHA, engine: scorer.engineName,
                             classNames: scorer.classNames, thresholds: scorer.thresholds, adjacentSlices: adjacentSlices, queue: queued,
                             p50Ms: p[0], p95Ms: p[1], p99Ms: p[2], overBudget: over, budgetMs: budgetMs, slices: count,
                             recentResults: [], pendingAlerts: [])
    }

    public func score(_ files: [(path: String, name: String)], heatmaps: Bool) async -> [SliceReport] {
        lock.withLock { waiting += files.count }
        return await withCheckedContinuation { continuation in
            queue.async { [self] in
                var reports: [SliceReport] = []
                for f in files {
                    let slices = reporter.report(path: f.path, name: f.name, heatmaps: heatmaps)
                    for r in slices where r.score != nil { _ = lock.withLock { latency.record(r.milliseconds) } }
                    metrics.uploaded(slices)
                    reports += slices
                    lock.withLock { waiting -= 1 }
                }
                continuation.resume(returning: reports)
            }
        }
    }

    public func acknowledge(_ id: String) -> Bool { false }
}
