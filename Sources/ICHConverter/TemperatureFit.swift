import Foundation
import ICHModel

/// Fits `ProbabilityCalibration`: per class the temperature that minimises the mean binary cross-entropy of
/// labelled validation slices (one parameter, convex in 1/T, found by golden-section search on log T), and the
/// logit bounds their number supports.
///
/// The temperature only softens (T >= 1): the validation slices of a series are not independent (40 series
/// make the shipped model's 936 validation slices), so a fit that sharpens the probabilities would claim more
/// certainty than that evidence holds, and it would magnify the int8 engine's differences from the float
/// network by 1/T. A class whose best temperature is below 1 keeps T = 1 (its bounds still apply).
public enum TemperatureFit {
    /// `logits[i][c]`, `labels[i][c]`.
    public static func fit(logits: [[Float]], labels: [[Bool]], source: String) throws(ConversionError) -> ProbabilityCalibration {
        guard let classes = logits.first?.count, !logits.isEmpty, labels.count == logits.count else {
            throw ConversionError("temperature calibration: no labelled validation slices")
        }
        var temperatures: [Float] = [], upper: [Float] = [], lower: [Float] = []
        var eceBefore: [Double] = [], eceAfter: [Double] = [], lossBefore: [Double] = [], lossAfter: [Double] = []
        for c in 0..<classes {
            let z = logits.map { Double($0[c]) }, y = labels.map { $0[c] }
            let positives = y.filter { $0 }.count, negatives = y.count - positives
            // The bounds: odds of n + 1 to 1 for the n validation slices of that side (a class never seen on one
            // side gets the bound of one slice, ln 2).
            let hi = log(Double(positives + 1)), lo = log(Double(negatives + 1))
            func loss(_ t: Double) -> Double {
                zip(z, y).map { bce(clamped(z: $0 / t, lo: lo, hi: hi), $1) }.reduce(0, +) / Double(z.count)
            }
            // Golden-section search of log T in [0, log 20] (the loss is unimodal in log T).
            var a = 0.0, b = log(20.0)
            let g = (5.0.squareRoot() - 1) / 2
            var x1 = b - g * (b - a), x2 = a + g * (b - a)
            var f1 = loss(exp(x1)), f2 = loss(exp(x2))
            for _ in 0..<80 {
                if f1 <= f2 { b = x2; x2 = x1; f2 = f1; x1 = b - g * (b - a); f1 = loss(exp(x1)) }
                else { a = x1; x1 = x2; f1 = f2; x2 = a + g * (b - a); f2 = loss(exp(x2)) }
            }
            // The search closes in on the boundary when the best T is 1 or below: take 1 itself there.
            let t = loss(1) <= loss(exp((a + b) / 2)) ? 1 : exp((a + b) / 2)
            temperatures.append(Float(t))
            upper.append(Float(hi))
            lower.append(Float(lo))
            let pBefore = z.map { 1 / (1 + exp(-$0)) }, pAfter = z.map { 1 / (1 + exp(-clamped(z: $0 / t, lo: lo, hi: hi))) }
            eceBefore.append(ProbabilityCalibration.expectedCalibrationError(probabilities: pBefore, labels: y))
            eceAfter.append(ProbabilityCalibration.expectedCalibrationError(probabilities: pAfter, labels: y))
            lossBefore.append(zip(z, y).map { bce($0, $1) }.reduce(0, +) / Double(z.count))
            lossAfter.append(loss(t))
        }
        return ProbabilityCalibration(temperatures: temperatures, logitMax: upper, logitMin: lower.map { -$0 }, samples: logits.count,
                                      source: source, eceBefore: eceBefore, eceAfter: eceAfter, lossBefore: lossBefore, lossAfter: lossAfter)
    }

    static func clamped(z: Double, lo: Double, hi: Double) -> Double { min(hi, max(-lo, z)) }

    /// Binary cross-entropy of logit `z` against `y`, computed stably.
    static func bce(_ z: Double, _ y: Bool) -> Double {
        let m = y ? -z : z  // -log sigmoid(-m) = log(1 + e^m)
        return m > 0 ? m + log1p(exp(-m)) : log1p(exp(m))
    }
}
