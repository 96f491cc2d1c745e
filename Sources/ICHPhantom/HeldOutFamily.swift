import Foundation

extension HeadPhantom {
    /// Which generator draws the head. `standard` is what the bundled model was trained, validated and tested
    /// on; `varied` (VariedFamily.swift) draws anatomy, confounders, acquisition and noise per series (issue 20's
    /// candidate model is trained on it, models/candidate-varied); `heldOut` is a structurally different family kept out of training entirely (docs/phantoms.md): other
    /// head shapes, cortex with irregular gyral folding, correlated (kernel-like) noise of varying dose, and
    /// high densities that are not blood (dense falx and superior sagittal sinus, pineal, choroid plexus and
    /// basal ganglia calcifications, beam-hardening streaks at the skull base). Bleeds are placed as in the
    /// standard family, so labels mean the same.
    public enum Family: String, CaseIterable, Sendable {
        case standard, heldOut = "heldout", varied
    }

    /// The held-out family's own draws, from their own random stream (seed-derived), so the standard family's
    /// heads stay exactly what they were.
    struct HeldOutAnatomy: Sendable {
        /// Outline: relative amplitudes and phases of the 2nd and 3rd harmonics (egg-shaped, flattened heads).
        var outline: [(amplitude: Double, phase: Double, order: Double)]
        /// Cortex: mean thickness (mm), folding orders and phases (gyri of varied width, changing with z).
        var cortex: Double
        var folds: [(order: Double, phase: Double, amplitude: Double, zRate: Double)]
        var grey: Double, white: Double
        /// Confounders (HU; 0 = absent).
        var falx: Double, sinus: Double, pineal: Double, choroid: Double, basalGanglia: Double
        var streaks: [(angle: Double, amplitude: Double, width: Double)]
        /// Noise: standard deviation (HU) after smoothing with a box of `kernel` pixels (1: white noise).
        var noise: Double
        var kernel: Int

        init(seed: UInt64) {
            var rng = SeededGenerator(seed: seed ^ 0x4E1D_0F7A_3B2C_9D15)
            outline = [(0.03 + 0.05 * rng.unit(), 2 * Double.pi * rng.unit(), 2), (0.02 * rng.unit(), 2 * Double.pi * rng.unit(), 3)]
            cortex = 2.5 + 2 * rng.unit()
            folds = (0..<3).map { _ in (Double(9 + Int(rng.next() % 24)), 2 * Double.pi * rng.unit(), 0.4 + 0.6 * rng.unit(), 4 + 8 * rng.unit()) }
            grey = 34 + 8 * rng.unit()
            white = 22 + 8 * rng.unit()
            falx = rng.unit() < 0.7 ? 50 + 40 * rng.unit() : 0
            sinus = 50 + 25 * rng.unit()
            pineal = rng.unit() < 0.6 ? 120 + 300 * rng.unit() : 0
            choroid = rng.unit() < 0.6 ? 80 + 150 * rng.unit() : 0
            basalGanglia = rng.unit() < 0.25 ? 80 + 100 * rng.unit() : 0
            streaks = (0..<(1 + Int(rng.next() % 3))).map { _ in
                (Double.pi * rng.unit(), (rng.unit() < 0.5 ? -1 : 1) * (30 + 60 * rng.unit()), 1 + 2 * rng.unit())
            }
            noise = 3 + 9 * rng.unit()
            kernel = [1, 3, 3, 5][Int(rng.next() % 4)]
        }

        /// The outline's radius factor at angle `theta`.
        func outlineFactor(_ theta: Double) -> Double {
            1 + outline.map { $0.amplitude * cos($0.order * theta + $0.phase) }.reduce(0, +)
        }

        /// Cortex thickness (mm) at this angle and height: gyri and sulci of varied width.
        func cortexThickness(_ theta: Double, _ zn: Double) -> Double {
            let f = folds.map { $0.amplitude * sin($0.order * theta + $0.phase + $0.zRate * zn) }.reduce(0, +) / Double(folds.count)
            return max(1.2, cortex * (1 + 0.6 * f))
        }

        /// Correlated noise for a slice: white Gaussian noise smoothed by a `kernel` box and rescaled to `noise`.
        func noiseField(size: Int, rng: inout SeededGenerator) -> [Float] {
            var white = (0..<(size * size)).map { _ in Float(rng.gaussian()) }
            guard kernel > 1 else { return white.map { $0 * Float(noise) } }
            let h = kernel / 2
            var tmp = [Float](repeating: 0, count: size * size)
            for y in 0..<size {
                for x in 0..<size {
                    var s: Float = 0
                    for d in -h...h { s += white[y * size + min(size - 1, max(0, x + d))] }
                    tmp[y * size + x] = s
                }
            }
            for y in 0..<size {
                for x in 0..<size {
                    var s: Float = 0
                    for d in -h...h { s += tmp[min(size - 1, max(0, y + d)) * size + x] }
                    white[y * size + x] = s
                }
            }
            // A box of k x k white values has k times the standard deviation of one divided by k^2: rescale.
            let scale = Float(noise) / Float(kernel)
            return white.map { $0 * scale }
        }
    }
}
