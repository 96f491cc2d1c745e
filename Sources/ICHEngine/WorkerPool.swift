import Foundation

/// A fixed set of threads that run one job at a time, each worker on its own share. Created once (thread
/// count from config or CLI); the caller's thread is worker 0, so `WorkerPool(threads: 1)` starts no thread.
/// Work is split by fixed ranges, never by who is free first, so results do not depend on scheduling.
public final class WorkerPool: @unchecked Sendable {
    public let count: Int
    private let condition = NSCondition()
    private var job: ((Int) -> Void)?
    private var generation = 0
    private var pending = 0
    private var stopping = false

    public init(threads: Int) {
        count = max(1, threads)
        for worker in 1..<count {
            let thread = Thread { [unowned self] in self.loop(worker) }
            thread.name = "ichd-worker-\(worker)"
            thread.start()
        }
    }

    deinit {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Runs `body(worker)` for every worker in 0..<count and returns when all have finished.
    public func run(_ body: (Int) -> Void) {
        guard count > 1 else { return body(0) }
        withoutActuallyEscaping(body) { body in
            condition.lock()
            job = body
            pending = count - 1
            generation += 1
            condition.broadcast()
            condition.unlock()
            body(0)
            condition.lock()
            while pending > 0 { condition.wait() }
            job = nil
            condition.unlock()
        }
    }

    /// Splits 0..<total into `count` contiguous ranges (the first ones one longer) and runs them in parallel.
    public func parallelFor(_ total: Int, _ body: (Range<Int>) -> Void) {
        let n = min(count, max(1, total))
        guard n > 1 else { return body(0..<total) }
        run { worker in
            guard worker < n else { return }
            let base = total / n, extra = total % n
            let start = worker * base + min(worker, extra)
            body(start..<(start + base + (worker < extra ? 1 : 0)))
        }
    }

    private func loop(_ worker: Int) {
        var seen = 0
        while true {
            condition.lock()
            while generation == seen && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            seen = generation
            var work = job
            condition.unlock()
            work?(worker)
            // Drop the job before reporting done: `run` lends it without escaping and checks nobody kept it.
            work = nil
            condition.lock()
            pending -= 1
            if pending == 0 { condition.broadcast() }
            condition.unlock()
        }
    }
}
