import Foundation

/// Files waiting to be decoded, grouped by series and served round-robin across series: when a backlog
/// builds up (a long series, or several at once), a series that starts later is not starved behind it.
/// Each series with waiting files gets one file per turn, in arrival order within the series, so a new
/// series' first k slices (what its alert needs) wait behind at most k files of each other active series,
/// not behind the whole backlog. docs/daemon.md says why this and not newest-first or strict FIFO.
///
/// A path is queued once: reports of a path already waiting are merged (the latest close time wins: a
/// producer rewrote it), and a report of a path being processed is kept and served again once that
/// processing ends (storescp overwrote the file with a duplicate in the meantime).
public final class IntakeQueue: @unchecked Sendable {
    public struct Item: Sendable, Equatable {
        public var arrival: Arrival
        /// The series the file claims (from its header), "" when unknown (not DICOM, unreadable); for a
        /// console upload, a series of its own.
        public var series: String
        /// Set for a file uploaded to the console: scored for the one who asked, nothing else.
        var upload: UploadTicket? = nil
    }

    private let condition = NSCondition()
    private var bySeries: [String: [Item]] = [:]
    private var order: [String] = []   // round-robin order of series with waiting files
    private var waiting: [String: String] = [:]   // path -> series
    private var inProcess: [String: String] = [:] // path -> series, from `next` to `finished`
    private var again: [String: Item] = [:]
    private var closed = false

    public init() {}

    public var count: Int { condition.withLock { waiting.count + inProcess.count } }
    public var waitingCount: Int { condition.withLock { waiting.count } }

    /// Files waiting or in process, per series.
    public func activeCount(series: String) -> Int {
        condition.withLock { (bySeries[series]?.count ?? 0) + inProcess.values.filter { $0 == series }.count }
    }

    public func add(_ item: Item) {
        condition.withLock {
            let path = item.arrival.path
            if inProcess[path] != nil {
                again[path] = item
                return
            }
            if let s = waiting[path], var list = bySeries[s], let i = list.firstIndex(where: { $0.arrival.path == path }) {
                list[i].arrival.closedAt = max(list[i].arrival.closedAt, item.arrival.closedAt)
                bySeries[s] = list
                return
            }
            waiting[path] = item.series
            if bySeries[item.series, default: []].isEmpty, !order.contains(item.series) { order.append(item.series) }
            bySeries[item.series, default: []].append(item)
            condition.signal()
        }
    }

    /// The next file, round-robin across series; nil after `timeout` or once closed.
    public func next(timeout: TimeInterval) -> Item? {
        condition.withLock {
            let deadline = Date().addingTimeInterval(timeout)
            while order.isEmpty, !closed {
                if !condition.wait(until: deadline) { return nil }
            }
            guard !closed, !order.isEmpty else { return nil }
            let series = order.removeFirst()
            var list = bySeries[series]!
            let item = list.removeFirst()
            if list.isEmpty { bySeries[series] = nil } else { bySeries[series] = list; order.append(series) }
            waiting[item.arrival.path] = nil
            inProcess[item.arrival.path] = item.series
            return item
        }
    }

    /// Processing of `path` ended (moved, or left in place after a failure to be retried by a rescan).
    public func finished(_ path: String) {
        let requeue: Item? = condition.withLock {
            inProcess[path] = nil
            return again.removeValue(forKey: path)
        }
        if let requeue { add(requeue) }
    }

    public func close() {
        condition.withLock {
            closed = true
            condition.broadcast()
        }
    }
}
