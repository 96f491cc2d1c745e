import Foundation
import ICHIngest

/// A synthetic axial head-CT series: the head as an ellipsoid sampled every `sliceSpacing` mm, blank slices
/// above the vertex, and (for positive series) an intraparenchymal-like hyperdense sphere that spans several
/// slices. Deliberately simple: it exercises ingest, preprocessing and labelling end to end; it is not anatomy.
public struct PhantomSeries: Sendable {
    public struct Slice: Sendable {
        public var image: HounsfieldImage
        public var identity: CTSliceIdentity
        /// RSNA subtypes present in this slice ("any" included when any is).
        public var labels: Set<String>
    }

    public var seed: UInt64
    public var positive: Bool
    public var size: Int = 512
    public var sliceSpacing: Double = 5

    public init(seed: UInt64, positive: Bool, size: Int = 512) {
        self.seed = seed
        self.positive = positive
        self.size = size
    }

    /// Deterministic UIDs under the UUID-derived root 2.25 (no organisation root needed).
    static func uid(_ parts: UInt64...) -> String {
        "2.25." + parts.map { String($0) }.joined(separator: ".")
    }

    public func slices() -> [Slice] {
        var rng = SeededGenerator(seed: seed)
        let count = 20 + Int(rng.next() % 21)                  // 20-40 slices
        let headHalfHeight = Double(count - 3) * sliceSpacing / 2  // the top slices are above the vertex
        let centreZ = headHalfHeight
        let study = Self.uid(seed, 1), series = Self.uid(seed, 1, 1)
        // Bleed: a sphere inside the brain, away from the skull.
        let bleedZ = centreZ + (rng.unit() - 0.5) * 1.6 * headHalfHeight
        let bleedRadius = 6 + rng.unit() * 12                   // mm
        let bleedX = 0.5 + (rng.unit() - 0.5) * 0.25, bleedY = 0.5 + (rng.unit() - 0.5) * 0.3
        let pixelSpacing = 250.0 / Double(size)
        var out: [Slice] = []
        for k in 0..<count {
            let z = Double(k) * sliceSpacing
            let t = (z - centreZ) / headHalfHeight
            var synth = HeadSliceSynthesizer(size: size, seed: seed &* 1000 &+ UInt64(k))
            synth.crossSection = t.magnitude < 1 ? (1 - t * t).squareRoot() : 0
            var labels: Set<String> = []
            let dz = z - bleedZ
            if positive, dz.magnitude < bleedRadius {
                let r = (bleedRadius * bleedRadius - dz * dz).squareRoot() / (pixelSpacing * Double(size))
                synth.bleed = (bleedX, bleedY, r, Float(60 + rng.unit() * 25))
            }
            let (image, bleedPixels) = synth.renderCountingBleed()
            if bleedPixels > 0 { labels = ["any", "intraparenchymal"] }
            var identity = CTSliceIdentity(studyInstanceUID: study, seriesInstanceUID: series,
                                           sopInstanceUID: Self.uid(seed, 1, 1, UInt64(k + 1)), instanceNumber: k + 1)
            identity.imagePositionPatient = [-125, -125, z]
            identity.pixelSpacing = [pixelSpacing, pixelSpacing]
            identity.sliceThickness = sliceSpacing
            identity.accessionNumber = "PH\(seed)"
            out.append(Slice(image: image, identity: identity, labels: labels))
        }
        return out
    }
}
