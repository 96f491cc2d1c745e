import Foundation
import ICHIngest

/// A simple axial head slice in Hounsfield units: air, scalp, skull with diploe, brain, ventricles, and an
/// optional hyperdense blob standing in for a bleed. Enough for ingest and preprocessing tests and benchmarks;
/// the phantom generator builds full series on top of it.
public struct HeadSliceSynthesizer: Sendable {
    public var size: Int = 512
    /// Head semi-axes as fractions of the image side.
    public var headRadii: (x: Double, y: Double) = (0.36, 0.43)
    public var center: (x: Double, y: Double) = (0.5, 0.5)
    /// Cross-section of the head at this slice relative to its widest (1 = widest, 0 = above the vertex).
    public var crossSection: Double = 1
    public var noiseSigma: Double = 4
    /// A round bleed (centre and radius as fractions of the side, HU) or nil.
    public var bleed: (x: Double, y: Double, radius: Double, hu: Float)? = nil
    public var seed: UInt64 = 1

    public init(size: Int = 512, seed: UInt64 = 1) {
        self.size = size
        self.seed = seed
    }

    public func render() -> HounsfieldImage { renderCountingBleed().image }

    /// The slice and how many of its pixels are bleed (the label is what was drawn, not what was intended).
    public func renderCountingBleed() -> (image: HounsfieldImage, bleedPixels: Int) {
        var rng = SeededGenerator(seed: seed)
        let n = size
        var pixels = [Float](repeating: -1000, count: n * n)
        let s = Double(n)
        let cx = center.x * s, cy = center.y * s
        let ax = headRadii.x * s * crossSection, ay = headRadii.y * s * crossSection
        guard ax >= 1, ay >= 1 else { return (HounsfieldImage(width: n, height: n, pixels: pixels), 0) }
        var bleedPixels = 0
        let skull = 0.045 * s, scalp = 0.02 * s
        for y in 0..<n {
            for x in 0..<n {
                let dx = (Double(x) + 0.5 - cx), dy = (Double(y) + 0.5 - cy)
                // Distance inside the outer ellipse, in pixels along the radius (approximate).
                let r = ((dx / ax) * (dx / ax) + (dy / ay) * (dy / ay)).squareRoot()
                let radial = (1 - r) * min(ax, ay)
                var hu: Double
                if radial < 0 {
                    hu = -1000
                } else if radial < scalp {
                    hu = 40
                } else if radial < scalp + skull {
                    let t = (radial - scalp) / skull
                    hu = (t > 0.3 && t < 0.7) ? 700 : 1400  // diploe between two cortical tables
                } else {
                    hu = 33 + 7 * sin(Double(x) * 0.05) * cos(Double(y) * 0.04)  // grey/white variation
                    let vx = dx / (0.08 * s * crossSection), vy = (dy + 0.02 * s) / (0.16 * s * crossSection)
                    if vx * vx + vy * vy < 1 {
                        hu = 8  // ventricles (the bleed here is parenchymal, so it stops at them)
                    } else if let b = bleed {
                        let bx = Double(x) + 0.5 - b.x * s, by = Double(y) + 0.5 - b.y * s
                        if bx * bx + by * by < (b.radius * s) * (b.radius * s) {
                            hu = Double(b.hu)
                            bleedPixels += 1
                        }
                    }
                }
                if hu > -1000 { hu += noiseSigma * rng.gaussian() }
                pixels[y * n + x] = Float(hu.rounded())
            }
        }
        return (HounsfieldImage(width: n, height: n, pixels: pixels), bleedPixels)
    }
}
