import ICHEngine
import ICHModel

/// How an activation's range is chosen from what calibration saw.
public enum CalibrationMethod: String, CaseIterable, Codable, Sendable {
    /// The observed minimum and maximum.
    case minMax = "min-max"
    /// The 0.01% and 99.99% quantiles: a few outliers do not stretch the scale.
    case percentile
    /// The clipping range that minimises the mean squared quantisation error on the observed values.
    case mse
}

/// Per-activation statistics gathered while the float executor runs calibration slices: exact minimum and
/// maximum, and an evenly strided sample of values (at most `perTensorSamples`) for quantiles and MSE search.
public struct ActivationStatistics: Sendable {
    public static let perTensorSamples = 1 << 18
    var minimum: [String: Float] = [:]
    var maximum: [String: Float] = [:]
    var samples: [String: [Float]] = [:]
    /// Per-channel sums and counts, for the channel means that bias correction needs.
    var channelSums: [String: [Double]] = [:]
    var channelCounts: [String: Int] = [:]
    /// Per-channel largest values, for channel equalisation.
    var channelMaxima: [String: [Float]] = [:]
    let samplesPerObservation: Int

    /// `expectedObservations`: how many slices will be observed, so that every slice contributes equally.
    public init(expectedObservations: Int) {
        samplesPerObservation = max(256, Self.perTensorSamples / max(1, expectedObservations))
    }

    public mutating func observe(_ name: String, _ map: FeatureMap) {
        let values = map.values
        guard let first = values.first else { return }
        let plane = map.height * map.width
        var sums = channelSums[name] ?? [Double](repeating: 0, count: map.channels)
        var maxima = channelMaxima[name] ?? [Float](repeating: -.infinity, count: map.channels)
        for c in 0..<map.channels {
            var s = 0.0
            for j in 0..<plane {
                s += Double(values[c * plane + j])
                maxima[c] = max(maxima[c], values[c * plane + j])
            }
            sums[c] += s
        }
        channelSums[name] = sums
        channelMaxima[name] = maxima
        channelCounts[name, default: 0] += plane
        var lo = first, hi = first
        for v in values {
            lo = min(lo, v)
            hi = max(hi, v)
        }
        minimum[name] = min(minimum[name] ?? lo, lo)
        maximum[name] = max(maximum[name] ?? hi, hi)
        let stride = max(1, values.count / samplesPerObservation)
        var kept = samples[name] ?? []
        var i = (values.count / 2) % stride  // deterministic phase
        while i < values.count && kept.count < Self.perTensorSamples {
            kept.append(values[i])
            i += stride
        }
        samples[name] = kept
    }

    /// Mean of each channel of every observed activation.
    public var channelMeans: [String: [Float]] {
        var out: [String: [Float]] = [:]
        for (name, sums) in channelSums {
            let n = Double(max(1, channelCounts[name] ?? 1))
            out[name] = sums.map { Float($0 / n) }
        }
        return out
    }

    /// Quantisation parameters of `bits` bits for `names` (the activations the int8 model quantises).
    public func parameters(_ method: CalibrationMethod, names: [String], bits: Int = 8) -> [String: QuantParams] {
        var out: [String: QuantParams] = [:]
        for name in names {
            guard let lo = minimum[name] else { continue }
            let hi = maximum[name]!
            switch method {
            case .minMax:
                out[name] = .covering(lo, hi, bits: bits)
            case .percentile:
                let sorted = samples[name]!.sorted()
                let q = { (p: Double) in sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count - 1) * p).rounded())))] }
                out[name] = .covering(lo >= 0 ? 0 : q(0.0001), q(0.9999), bits: bits)
            case .mse:
                out[name] = Self.mseOptimal(samples[name]!, lo: lo, hi: hi, bits: bits)
            }
        }
        return out
    }

    /// int16 shortcut-path parameters for `names`: the observed range with `WideQuantParams.headroom`.
    public func wideParameters(names: [String]) -> [String: WideQuantParams] {
        var out: [String: WideQuantParams] = [:]
        for name in names {
            guard let lo = minimum[name], let hi = maximum[name] else { continue }
            out[name] = .covering(lo, hi)
        }
        return out
    }

    /// Searches clipping ranges [a x lo, a x hi] for a in (0.2, 1] and keeps the one with the least squared error.
    static func mseOptimal(_ values: [Float], lo: Float, hi: Float, bits: Int) -> QuantParams {
        var best = QuantParams.covering(lo, hi, bits: bits)
        var bestError = Double.infinity
        for step in 0..<40 {
            let a = Float(1.0 - 0.02 * Double(step))
            let q = QuantParams.covering(lo * a, hi * a, bits: bits)
            var error = 0.0
            for v in values {
                let d = Double(v - q.dequantize(level: q.level(v)))
                error += d * d
            }
            if error < bestError {
                bestError = error
                best = q
            }
        }
        return best
    }
}

/// Signal-to-quantisation-noise ratio in dB: 10 log10(sum f^2 / sum (f - q)^2).
public func sqnr(reference f: [Float], quantized q: [Float]) -> Double {
    var signal = 0.0, noise = 0.0
    for (a, b) in zip(f, q) {
        signal += Double(a) * Double(a)
        noise += Double(a - b) * Double(a - b)
    }
    if noise == 0 { return .infinity }
    return 10 * log10(signal / noise)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
