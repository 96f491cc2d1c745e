import Foundation

/// File close to score, per slice: percentiles over a recent window, the over-budget count, and whether the
/// overrun is sustained (health DEGRADED). Sustained: at least half of the last `window` slices over the
/// budget; it clears once the last `window / 2` are all within it, so one slow slice does not flap the state.
public struct LatencyTracker: Sendable {
    public let budgetMs: Int
    public let window: Int
    private var recent: [Double] = []   // ring of the last `capacity` latencies (ms)
    private var next = 0
    private let capacity = 1024
    public private(set) var count = 0
    public private(set) var overBudget = 0
    private var lastFlags: [Bool] = []
    public private(set) var degraded = false

    public init(budgetMs: Int, window: Int = 20) {
        self.budgetMs = budgetMs
        self.window = window
    }

    /// Records one slice; returns true when the sustained-overrun state changed.
    public mutating func record(_ ms: Double) -> Bool {
        if recent.count < capacity { recent.append(ms) } else { recent[next] = ms }
        next = (next + 1) % capacity
        count += 1
        let over = ms > Double(budgetMs)
        if over { overBudget += 1 }
        lastFlags.append(over)
        if lastFlags.count > window { lastFlags.removeFirst(lastFlags.count - window) }
        let was = degraded
        if !degraded, lastFlags.count >= min(window, 4), lastFlags.filter({ $0 }).count * 2 >= max(lastFlags.count, 4) {
            degraded = true
        } else if degraded, lastFlags.suffix(max(1, window / 2)).allSatisfy({ !$0 }) {
            degraded = false
        }
        return degraded != was
    }

    /// Percentile (0...100) over the recent window, nil before the first slice.
    public func percentile(_ p: Double) -> Double? { percentiles([p])[0] }

    /// Several percentiles from one sort of the window.
    public func percentiles(_ ps: [Double]) -> [Double?] {
        guard !recent.isEmpty else { return ps.map { _ in nil } }
        let sorted = recent.sorted()
        return ps.map { p in
            let rank = Int((p / 100 * Double(sorted.count - 1)).rounded())
            return sorted[min(max(rank, 0), sorted.count - 1)]
        }
    }
}
