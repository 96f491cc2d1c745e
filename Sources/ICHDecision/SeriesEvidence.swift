import ICHEngine
import ICHPreprocessing

/// The appliance's urgent rule over one series while its slices arrive, in any order: the alarm is raised as
/// soon as `adjacentSlices` (k) spatially adjacent scored slices reach the alarm class's threshold, without
/// waiting for the series to end. One isolated slice over threshold (a streak, a calcification the model
/// mistakes) does not light the lamp when k > 1; a bleed spans several contiguous slices.
///
/// Slices are ordered by their position along the slice normal (Image Position (Patient) projected on the
/// normal), or by instance number where the position is unknown. Two slices are adjacent when they are
/// neighbours in that order among every slice seen so far (skipped ones included) and no further apart than
/// 1.5 times the series' slice spacing (the smallest gap seen), so a gap left by a slice that has not arrived
/// yet does not join two distant slices once the spacing is known.
public struct SeriesEvidence: Sendable {
    public struct Slice: Sendable, Equatable {
        /// Position along the normal (mm) or instance number.
        public var key: Double
        public var instance: Int?
        /// Nil for a skipped slice (present, but not scored).
        public var alarmProbability: Float?
    }

    public let adjacentSlices: Int
    public private(set) var finding: SeriesFinding
    public private(set) var slices: [Slice] = []
    public private(set) var skipped = 0
    /// The slice that completed the evidence (first time the rule held), if it has.
    public private(set) var completedBy: Slice?

    public init(classNames: [String], thresholds: [Float], adjacentSlices: Int) {
        precondition(adjacentSlices >= 1)
        finding = SeriesFinding(classNames: classNames, thresholds: thresholds)
        self.adjacentSlices = adjacentSlices
    }

    public var isUrgent: Bool { completedBy != nil }

    /// Sort key of a slice: its position along the normal when known, else its instance number, else the
    /// order of arrival (after everything else).
    public static func key(position: Double?, instance: Int?, arrival: Int) -> Double {
        position ?? instance.map(Double.init) ?? Double(1_000_000 + arrival)
    }

    /// The sort key of a slice as the pipeline saw it (`arrival`: its order in the file or series).
    public static func key(of result: SliceResult, arrival: Int) -> Double {
        key(position: result.frameAttributes?.positionAlongNormal, instance: result.header?.instanceNumber, arrival: arrival)
    }

    /// Adds one scored slice. Returns true when this slice completes the evidence for the first time.
    @discardableResult
    public mutating func add(_ score: SliceScore, key: Double, instance: Int?) -> Bool {
        finding.add(score, slice: instance ?? 0)
        let a = finding.alertClass
        return insert(Slice(key: key, instance: instance, alarmProbability: score.probabilities[a]))
    }

    /// A slice that was present but not scored (too little brain): it keeps its place in the order.
    public mutating func addSkipped(key: Double, instance: Int?) {
        skipped += 1
        _ = insert(Slice(key: key, instance: instance, alarmProbability: nil))
    }

    private func isPositive(_ s: Slice) -> Bool {
        guard let p = s.alarmProbability else { return false }
        return p >= finding.thresholds[finding.alertClass]
    }

    private mutating func insert(_ slice: Slice) -> Bool {
        let at = slices.firstIndex { $0.key > slice.key } ?? slices.endIndex
        slices.insert(slice, at: at)
        guard completedBy == nil, isPositive(slice) else { return false }
        // The spacing: the smallest positive gap between neighbours.
        var spacing = Double.infinity
        for i in slices.indices.dropFirst() {
            let gap = slices[i].key - slices[i - 1].key
            if gap > 1e-6 { spacing = min(spacing, gap) }
        }
        func adjacent(_ i: Int, _ j: Int) -> Bool {
            let gap = abs(slices[j].key - slices[i].key)
            return !spacing.isFinite || gap <= spacing * 1.5 + 1e-6
        }
        // The run of adjacent positive slices through the new one.
        var lo = at, hi = at
        while lo > 0, isPositive(slices[lo - 1]), adjacent(lo - 1, lo) { lo -= 1 }
        while hi + 1 < slices.count, isPositive(slices[hi + 1]), adjacent(hi, hi + 1) { hi += 1 }
        if hi - lo + 1 >= adjacentSlices {
            completedBy = slice
            return true
        }
        return false
    }
}
