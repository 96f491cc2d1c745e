/// How a kernel spreads its work over threads: `parts(n) { part, range in }` runs the body over a partition
/// of 0..<n into at most `count` ranges, each with its own part number below `count`, possibly concurrently.
/// A part can therefore use the part-th of `count` buffers its caller planned, and a kernel allocates nothing
/// while it runs. Every kernel gives the same results for every split.
public struct Parallel: @unchecked Sendable {
    public let count: Int
    private let split: (Int, (Int, Range<Int>) -> Void) -> Void

    /// `split(n, body)` must call `body(part, range)` once per range of a partition of 0..<n, with distinct
    /// parts below `count`, and return when all have returned.
    public init(count: Int, split: @escaping (Int, (Int, Range<Int>) -> Void) -> Void) {
        precondition(count >= 1)
        self.count = count
        self.split = split
    }

    /// Everything in one part, on the calling thread.
    public static let serial = Parallel(count: 1) { n, body in body(0, 0..<n) }

    public func parts(_ n: Int, _ body: (Int, Range<Int>) -> Void) {
        split(n, body)
    }

    /// For work that needs no per-part buffer.
    public func callAsFunction(_ n: Int, _ body: (Range<Int>) -> Void) {
        split(n) { _, range in body(range) }
    }
}
