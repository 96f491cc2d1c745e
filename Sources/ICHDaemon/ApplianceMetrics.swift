import CoreMetrics
import ICHDecision

/// The appliance's counters and the slice-latency histogram, through swift-metrics: the daemon counts, the
/// console's `/metrics` exports (Prometheus text). `source` is `drop` for the drop folder's slices and
/// `console` for uploads, so that questions asked on the console never look like intake.
public struct ApplianceMetrics: Sendable {
    let factory: any MetricsFactory

    /// Counts nothing (no console).
    public init() { factory = NOOPMetricsHandler.instance }
    public init(factory: any MetricsFactory) { self.factory = factory }

    public enum SliceOutcome: String, Sendable { case scored, skipped, rejected }

    public func slice(_ outcome: SliceOutcome, source: String, latencyMs: Double? = nil) {
        Counter(label: "ichd_slices_\(outcome.rawValue)_total", dimensions: [("source", source)], factory: factory).increment()
        if let latencyMs, latencyMs.isFinite, latencyMs >= 0 {
            Timer(label: "ichd_slice_latency_seconds", dimensions: [("source", source)], factory: factory)
                .recordNanoseconds(Int64(latencyMs * 1_000_000))
        }
    }

    /// A console upload's slices (`source="console"`; a scored slice's latency is its report's time).
    public func uploaded(_ reports: [SliceReport]) {
        for r in reports {
            switch r.outcome {
            case .scored: slice(.scored, source: "console", latencyMs: r.milliseconds)
            case .skipped: slice(.skipped, source: "console")
            case .rejected: slice(.rejected, source: "console")
            }
        }
    }

    public func alertRaised() { Counter(label: "ichd_alerts_raised_total", factory: factory).increment() }

    public func alertAcknowledged(by: String) {
        Counter(label: "ichd_alerts_acknowledged_total", dimensions: [("by", by)], factory: factory).increment()
    }
}
