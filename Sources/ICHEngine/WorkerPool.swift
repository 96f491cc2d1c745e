import Foundation
import ICHKernels
import Synchronization

/// A fixed set of threads that run one job at a time, each worker on its own share. Created once (thread
/// count from config or CLI); the caller's thread is worker 0, so `WorkerPool(threads: 1)` starts no thread.
/// Work is split by fixed ranges, never by who is free first, so results do not depend on scheduling.
///
/// A ResNet18 slice is about 50 parallel regions of a millisecond or less; waking a sleeping thread costs tens
/// of microseconds, so workers and the caller spin briefly on atomics before falling back to the condition.
public final class WorkerPool: @unchecked Sendable {
    public let count: Int
    /// About 0.1-0.2 ms of polling. With 20 000 (about 15 us) the workers fell asleep in the short serial gaps
    /// between regions: 2 threads 10.6-10.9 ms against 9.5-9.8 ms with this (1 thread 17.9-18.4 ms either way,
    /// `ichd bench --threads 1|2`, alternating runs). After an inference a worker spins this long, then sleeps.
    static let spins = 200_000
    /// Owned by the pool and by every worker thread, so a thread that wakes after the pool is gone finds its
    /// state still there (and `stopping` set).
    private let state: State

    final class State: @unchecked Sendable {
        let condition = NSCondition()
        /// The current job: `job(part, range)` for parts below `parts` of a split of 0..<total.
        var job: ((Int, Range<Int>) -> Void)?
        var total = 0, parts = 0
        var generation = 0
        var stopping = false
        /// `generation` as the spinning workers read it.
        let published = Atomic<Int>(0)
        /// Workers still running the current job.
        let remaining = Atomic<Int>(0)

        func publish() {
            generation += 1
            published.store(generation, ordering: .releasing)
            condition.broadcast()
        }
    }

    /// The kernels' view of the pool (`parallelParts` behind an opaque closure, made once: see `parallelParts`).
    public let kernelParallel: Parallel

    public init(threads: Int) {
        count = max(1, threads)
        state = State()
        kernelParallel = Parallel(count: count) { [state, count] n, body in Self.parallelParts(state, count, n, body) }
        for worker in 1..<count {
            let thread = Thread { [state] in Self.loop(worker, state) }
            thread.name = "ichd-worker-\(worker)"
            thread.start()
        }
    }

    deinit {
        state.condition.lock()
        state.stopping = true
        state.publish()
        state.condition.unlock()
    }

    /// Runs `body(worker)` for every worker in 0..<count and returns when all have finished.
    public func run(_ body: (Int) -> Void) {
        parallelParts(count) { worker, _ in body(worker) }
    }

    /// Splits 0..<total into `count` contiguous ranges (the first ones one longer) and runs them in parallel.
    public func parallelFor(_ total: Int, _ body: (Range<Int>) -> Void) {
        kernelParallel(total, body)
    }

    /// As `parallelFor`, and each range comes with the number of the worker running it (below `count`).
    public func parallelParts(_ total: Int, _ body: (Int, Range<Int>) -> Void) {
        Self.parallelParts(state, count, total, body)
    }

    /// The job is lent to the workers through `withoutActuallyEscaping`, which boxes the closure: one small
    /// allocation per parallel region when there are several threads (about 50 per inference at 2 threads,
    /// counted with a uprobe on malloc; none with 1 thread). Everything large is planned in the workspace.
    static func parallelParts(_ s: State, _ count: Int, _ total: Int, _ body: (Int, Range<Int>) -> Void) {
        let n = min(count, max(1, total))
        guard n > 1 else { return body(0, 0..<total) }
        withoutActuallyEscaping(body) { body in
            s.condition.lock()
            s.job = body
            s.total = total
            s.parts = n
            s.remaining.store(count - 1, ordering: .releasing)
            s.publish()
            s.condition.unlock()
            body(0, range(0, of: n, total))
            var spun = 0
            while s.remaining.load(ordering: .acquiring) > 0 && spun < Self.spins { spun += 1 }
            s.condition.lock()
            while s.remaining.load(ordering: .acquiring) > 0 { s.condition.wait() }
            s.job = nil
            s.condition.unlock()
        }
    }

    /// Part `part` of 0..<total split `parts` ways.
    static func range(_ part: Int, of parts: Int, _ total: Int) -> Range<Int> {
        let base = total / parts, extra = total % parts
        let start = part * base + min(part, extra)
        return start..<(start + base + (part < extra ? 1 : 0))
    }

    private static func loop(_ worker: Int, _ s: State) {
        var seen = 0
        while true {
            var spun = 0
            while s.published.load(ordering: .acquiring) == seen && spun < spins { spun += 1 }
            s.condition.lock()
            while s.generation == seen && !s.stopping { s.condition.wait() }
            if s.stopping {
                s.condition.unlock()
                return
            }
            seen = s.generation
            var work = s.job
            let total = s.total, parts = s.parts
            s.condition.unlock()
            if worker < parts { work?(worker, range(worker, of: parts, total)) }
            // Drop the job before reporting done: `run` lends it without escaping and checks nobody kept it.
            work = nil
            if s.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                s.condition.lock()
                s.condition.broadcast()
                s.condition.unlock()
            }
        }
    }
}
