import ICHAlerts
import ICHDaemon
import Prometheus

/// Prometheus text for `GET /metrics`: the counters and latency histogram the daemon (or `ichd serve`) counts
/// through swift-metrics into this registry, and gauges read from the status at each scrape.
public final class ConsoleMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    public let appliance: ApplianceMetrics

    /// Bucket bounds of `ichd_slice_latency_seconds`: around budgets of tens of milliseconds to seconds.
    static let latencyBuckets: [Duration] = [10, 20, 30, 40, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000].map { .milliseconds($0) }

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["ichd_slice_latency_seconds"] = Self.latencyBuckets
        appliance = ApplianceMetrics(factory: factory)
        // Zero counters exist from the start, so a scrape before the first slice already lists them.
        for name in ["scored", "skipped", "rejected"] {
            for source in ["drop", "console"] { _ = registry.makeCounter(name: "ichd_slices_\(name)_total", labels: [("source", source)]) }
        }
        _ = registry.makeCounter(name: "ichd_alerts_raised_total", labels: [])
    }

    func exposition(_ status: ConsoleStatus) -> String {
        registry.makeGauge(name: "ichd_queue_depth", labels: [], help: "Files waiting or in process").set(to: Double(status.queue))
        for state in HealthState.allCases {
            registry.makeGauge(name: "ichd_health_state", labels: [("state", state.rawValue)],
                               help: "1 for the appliance's health state now, 0 for the others").set(to: status.health == state ? 1.0 : 0.0)
        }
        registry.makeGauge(name: "ichd_pending_alerts", labels: [], help: "Alerts raised and not acknowledged").set(to: Double(status.pendingAlerts.count))
        registry.makeGauge(name: "ichd_lamp_on", labels: [], help: "1 while the alert lamp is lit or blinking")
            .set(to: status.lamp == nil || status.lamp == .off ? 0.0 : 1.0)
        registry.makeGauge(name: "ichd_slice_budget_seconds", labels: [], help: "The per-slice latency budget").set(to: Double(status.budgetMs) / 1000)
        return registry.emitToString()
    }
}
