import ICHEngine

/// What the appliance concludes about one series from the scores of its slices. A class is positive for the
/// series when any scored slice reaches that class's threshold (the model's operating point); the series is
/// urgent (the lamp lights) when `any` is positive. Skipped slices (too little brain) do not count either way.
public struct SeriesFinding: Sendable {
    public let classNames: [String]
    public let thresholds: [Float]
    public private(set) var slicesScored = 0
    /// Per class: the highest probability over the series' slices, and the slice that gave it (the one whose
    /// heatmap the console shows).
    public private(set) var maxProbabilities: [Float]
    public private(set) var strongestSlice: [Int?]
    /// The `ood` scores of the scored slices that have one (a model without a summary gives none).
    public private(set) var oodScores: [Float] = []

    public init(classNames: [String], thresholds: [Float]) {
        precondition(classNames.count == thresholds.count)
        self.classNames = classNames
        self.thresholds = thresholds
        maxProbabilities = [Float](repeating: 0, count: classNames.count)
        strongestSlice = [Int?](repeating: nil, count: classNames.count)
    }

    /// Adds one slice's score; `slice` identifies it to the caller (an index, an instance number).
    public mutating func add(_ score: SliceScore, slice: Int) {
        precondition(score.probabilities.count == classNames.count, "a score from another model")
        slicesScored += 1
        if let ood = score.ood { oodScores.append(ood) }
        for c in classNames.indices where strongestSlice[c] == nil || score.probabilities[c] > maxProbabilities[c] {
            maxProbabilities[c] = score.probabilities[c]
            strongestSlice[c] = slice
        }
    }

    public func isPositive(_ c: Int) -> Bool { slicesScored > 0 && maxProbabilities[c] >= thresholds[c] }

    public var positiveClasses: [String] { classNames.indices.filter(isPositive).map { classNames[$0] } }

    /// The class that raises the alarm: `any` when the model has it, else the first class.
    public var alertClass: Int { classNames.firstIndex(of: "any") ?? 0 }

    public var isUrgent: Bool { isPositive(alertClass) }

    /// The series' `ood` score: the (upper) median of its slices' (nil when none has one). A series is out of
    /// distribution when it reaches 1, i.e. when at least half its scored slices are unlike every training
    /// slice: one odd slice (the vertex, the skull base) does not make a familiar series unfamiliar, and a
    /// series of real CT, every slice of which is far out, is flagged however its slices sort.
    public var ood: Float? {
        guard !oodScores.isEmpty else { return nil }
        return oodScores.sorted()[oodScores.count / 2]
    }

    /// True when the series is out of distribution (docs/model-ood.md says what the appliance does then).
    public var isOutOfDistribution: Bool { (ood ?? 0) >= 1 }
}
