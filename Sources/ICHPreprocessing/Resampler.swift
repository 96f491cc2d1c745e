/// Separable resampling weights from a source span to `outputLength` samples: area averaging when shrinking
/// (each output sample is the exact mean of the source interval it covers), bilinear when growing (pixel
/// centres aligned, edges replicated within the span). Source indices outside `0..<sourceLimit` are left out,
/// which is how padding beyond the image reads as 0.
struct ResampleWeights {
    /// For output i, taps `start[i]..<start[i+1]` of `index`/`weight`.
    var start: [Int]
    var index: [Int]
    var weight: [Float]

    init(spanStart: Int, spanLength: Int, outputLength: Int, sourceLimit: Int) {
        start = [0]
        index = []
        weight = []
        let scale = Double(spanLength) / Double(outputLength)
        for i in 0..<outputLength {
            if spanLength > outputLength {
                let a = Double(i) * scale, b = Double(i + 1) * scale
                var j = Int(a.rounded(.down))
                while Double(j) < b {
                    let overlap = min(b, Double(j + 1)) - max(a, Double(j))
                    if overlap > 0 { add(spanStart + j, overlap / scale, sourceLimit) }
                    j += 1
                }
            } else if spanLength == outputLength {
                add(spanStart + i, 1, sourceLimit)
            } else {
                let u = min(max((Double(i) + 0.5) * scale - 0.5, 0), Double(spanLength - 1))
                let j0 = Int(u.rounded(.down))
                let t = u - Double(j0)
                add(spanStart + j0, 1 - t, sourceLimit)
                if t > 0 { add(spanStart + j0 + 1, t, sourceLimit) }
            }
            start.append(index.count)
        }
    }

    private mutating func add(_ source: Int, _ w: Double, _ limit: Int) {
        guard source >= 0, source < limit, w > 0 else { return }
        index.append(source)
        weight.append(Float(w))
    }

    /// Source range any tap reads (empty when the span lies outside the image).
    var sourceRange: Range<Int> {
        guard let lo = index.min(), let hi = index.max() else { return 0..<0 }
        return lo..<(hi + 1)
    }
}
